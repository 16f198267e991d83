"""One policy for existing outputs: refuse unless --overwrite (atomic), or extend where a command extends."""

import shutil

import numpy as np
import pytest
import torch
from cli_helpers import FACTORY_MODULE, assert_one_line_error, cli, install_factories, warning_lines
from importer_fixtures import write_dwsnets_mnist_inrs, write_small_cnn_zoo
from zoo_models import make_cnn, make_mlp

from datasets import ZooReader, ZooWriter
from datasets.errors import ZooError
from datasets.zoo.build import build_classifier_zoo, build_siren_zoo
from datasets.zoo.recipes import ClassifierRecipe, get_recipe

ONE_RUN = ClassifierRecipe(name="one", data="digits", n_runs=1, seed=5, families=("mlp",), widths=(8,), depths=(2,),
                           activations=("relu",), epochs=(1,), batch_size=128)


@pytest.fixture
def zoos(tmp_path, mlp_layout, cnn_layout):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    with ZooWriter(a) as w:
        for i in range(10):
            w.add(make_mlp(i), mlp_layout, labels={"acc": i / 10, "run": i // 2})
    with ZooWriter(b) as w:
        for i in range(6):
            w.add(make_cnn(i), cnn_layout, labels={"acc": i / 10})
    return a, b


def test_merge_refuses_an_existing_output_unless_overwrite(zoos, tmp_path, capsys):
    a, b = zoos
    out = tmp_path / "ab.h5"
    out.write_bytes(b"precious")
    rc, _, err = cli(capsys, "merge", a, b, out)
    assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    rc, text, err = cli(capsys, "merge", a, b, out, "--overwrite")
    assert rc == 0 and "16 models from 2 zoos" in text, err
    with ZooReader(out) as r:
        assert r.num_models == 16
    rc, _, err = cli(capsys, "merge", a, b, tmp_path / "missing" / "ab.h5")
    assert_one_line_error(rc, err, "does not exist", "mkdir")


def test_merge_refuses_overlapping_inputs_or_dedupes_them(zoos, tmp_path, capsys, mlp_layout):
    a, b = zoos
    rc, _, err = cli(capsys, "merge", a, a, tmp_path / "aa.h5")
    assert_one_line_error(rc, err, "given more than once")
    shutil.copy(a, tmp_path / "copy.h5")
    rc, _, err = cli(capsys, "merge", a, b, tmp_path / "copy.h5", tmp_path / "x.h5")
    assert_one_line_error(rc, err, "10 models of later inputs have the same weights", "copy.h5 model 0", "a.h5 model 0",
                          "--dedupe")
    assert not (tmp_path / "x.h5").exists()  # the refused merge wrote nothing
    # a zoo and a later append of it share its first models; --dedupe keeps one copy of each
    grown = tmp_path / "grown.h5"
    shutil.copy(a, grown)
    with ZooWriter(grown, "a") as w:
        for i in range(10, 13):
            w.add(make_mlp(i), mlp_layout, labels={"acc": i / 10, "run": i // 2})
    rc, text, err = cli(capsys, "merge", a, grown, b, tmp_path / "d.h5", "--dedupe")
    assert rc == 0 and "19 models from 3 zoos" in text, err
    assert any("skipped 10 models" in w and "grown.h5" in w for w in warning_lines(err)), err
    with ZooReader(tmp_path / "d.h5") as r, ZooReader(grown) as rg:
        assert np.array_equal(r.read(10)[1], rg.read(10)[1])  # grown's new models follow a's
        assert sorted(np.concatenate([r.split(n) for n in r.split_names]).tolist()) == list(range(19))
        vecs = {r.read(i)[1].tobytes() for i in range(r.num_models)}
        assert len(vecs) == 19  # no two stored models are the same network


def test_build_refuses_an_existing_zoo_and_a_repeated_seed(tmp_path, capsys, mlp_layout):
    out = tmp_path / "zoo.h5"
    with ZooWriter(out) as w:
        w.add(make_mlp(0), mlp_layout, labels={"recipe": "digits-cnn-small", "seed": 0})
    before = out.read_bytes()
    rc, _, err = cli(capsys, "build", "digits-cnn-small", out, "--n-runs", "1", "--quiet")
    assert_one_line_error(rc, err, "already exists", "--append", "--overwrite")
    rc, _, err = cli(capsys, "build", "digits-cnn-small", out, "--n-runs", "1", "--quiet", "--append", "--seed", "0")
    assert_one_line_error(rc, err, "already holds 1 models of recipe 'digits-cnn-small' with run seeds [0]",
                          "another --seed")
    assert out.read_bytes() == before


def test_build_append_adds_another_seed_and_refuses_the_same_one(tmp_path):
    out = tmp_path / "zoo.h5"
    first = build_classifier_zoo(ONE_RUN, out)
    with pytest.raises(ZooError, match="recipe 'one' with run seeds \\[500000\\]"):
        build_classifier_zoo(ONE_RUN, out, append=True)
    build_classifier_zoo(ClassifierRecipe(**{**ONE_RUN.__dict__, "seed": 6}), out, append=True)
    with ZooReader(out) as r:
        assert r.num_models == 2 * first.models and set(r.labels("seed")) == {500_000, 600_000}


def test_archs_and_plot_refuse_existing_files(zoos, tmp_path, capsys):
    a, _ = zoos
    (tmp_path / "archs.h5").write_bytes(b"keep")
    rc, _, err = cli(capsys, "archs", "10", tmp_path / "archs.h5", "--quiet")
    assert_one_line_error(rc, err, "architecture file", "already exists", "--overwrite")
    assert (tmp_path / "archs.h5").read_bytes() == b"keep"
    (tmp_path / "p.png").write_bytes(b"keep")
    rc, _, err = cli(capsys, "info", a, "--plot", tmp_path / "p.png")
    assert_one_line_error(rc, err, "plot", "already exists", "--overwrite")
    rc, text, err = cli(capsys, "info", a, "--plot", tmp_path / "p.png", "--overwrite")
    assert rc == 0 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG", err


def test_importers_refuse_existing_zoos_and_append_only_what_is_missing(tmp_path, capsys):
    write_small_cnn_zoo(tmp_path / "mnist", n_runs=3, gz=True, index_column=True)  # 9 rows
    out = tmp_path / "cnn.h5"
    rc, _, err = cli(capsys, "import-small-cnn-zoo", tmp_path / "mnist", out, "--limit", "4", "--quiet")
    assert rc == 0, err
    rc, _, err = cli(capsys, "import-small-cnn-zoo", tmp_path / "mnist", out, "--quiet")
    assert_one_line_error(rc, err, "already exists", "--append", "--overwrite")
    rc, text, err = cli(capsys, "import-small-cnn-zoo", tmp_path / "mnist", out, "--append", "--quiet")
    assert rc == 0 and "imported 5 models" in text, err  # the 4 already there are skipped
    rc, text, _ = cli(capsys, "import-small-cnn-zoo", tmp_path / "mnist", out, "--append", "--quiet")
    assert rc == 0 and "imported 0 models" in text
    with ZooReader(out) as r:
        sources = list(r.labels("source"))
    assert len(sources) == 9 == len(set(sources))
    rc, _, err = cli(capsys, "import-small-cnn-zoo", tmp_path / "mnist", out, "--limit", "2", "--overwrite", "--quiet")
    with ZooReader(out) as r:
        assert rc == 0 and r.num_models == 2, err


def test_convert_resumes_external_folders_instead_of_duplicating(tmp_path, capsys):
    write_dwsnets_mnist_inrs(tmp_path / "dataset")
    src, out = tmp_path / "dataset" / "mnist-inrs", tmp_path / "inr.h5"
    for _ in range(2):
        rc, _, err = cli(capsys, "convert", src, out, "--quiet")
        assert rc == 0, err
    with ZooReader(out) as r:
        assert r.num_models == 12 == len(set(r.labels("source")))


def test_convert_refuses_a_missing_output_folder(tmp_path, monkeypatch, capsys):
    install_factories(tmp_path, monkeypatch)
    (tmp_path / "src").mkdir()
    torch.save(make_mlp(0).state_dict(), tmp_path / "src" / "m.pt")
    rc, _, err = cli(capsys, "convert", tmp_path / "src", tmp_path / "nope" / "z.h5", "--model",
                     f"{FACTORY_MODULE}:make", "--workers", "0", "--quiet")
    assert_one_line_error(rc, err, "does not exist", "mkdir")


def test_siren_build_append_refuses_its_seed_before_fitting(tmp_path, mlp_layout):
    out = tmp_path / "inr.h5"
    with ZooWriter(out) as w:
        w.add(make_mlp(0), mlp_layout, labels={"recipe": "digits-siren", "seed": 0})
    with pytest.raises(ZooError, match="recipe 'digits-siren' with seed \\[0\\]"):
        build_siren_zoo(get_recipe("digits-siren", n_images=1), out, append=True)
    with ZooReader(out) as r:
        assert r.num_models == 1
