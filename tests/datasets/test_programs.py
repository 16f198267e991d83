"""Runnable zoos: every writer stores its networks' programs, per function, and ``add-program`` adds them later.

Each check runs a stored program with a stored row's weights and compares it with the network the row
came from, so a program pointed at the wrong rows (a tanh row given the relu function) fails.
"""

import h5py
import pytest
import torch
from cli_helpers import assert_one_line_error, cli, install_factories
from importer_fixtures import (
    DWSNetsINR,
    ModelZooCNN,
    model_zoo_factory,
    tf_cnn_forward,
    write_dwsnets_mnist_inrs,
    write_model_zoos_runs,
    write_small_cnn_zoo,
)

import graphs
from datasets import ZooDataset, ZooFormatError, ZooReader, ZooWriter
from datasets.importers.checkpoint_dirs import import_checkpoint_dirs
from datasets.importers.inr_folder import import_inr_folder
from datasets.importers.small_cnn_zoo import import_small_cnn_zoo
from datasets.merge import merge_zoos
from datasets.zoo.models import SmallCNN

CNN_EXAMPLE = (torch.zeros(1, 1, 8, 8),)

NETS = '''
from datasets.zoo.models import SmallCNN, MLP


def make_relu():
    return SmallCNN(1, 3, width=4, depth=2, activation="relu")


def make_tanh():
    return SmallCNN(1, 3, width=4, depth=2, activation="tanh")


def make_other():
    return SmallCNN(1, 3, width=5, depth=2, activation="relu")
'''


def _cnn(act: str, seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(1, 3, width=4, depth=2, activation=act).eval()


def _row_output(reader: ZooReader, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: model ``i``'s stored program run with its stored weights on a random input ``x`` of the
    program's stored input shape (exported programs have static shapes)."""
    shape = reader.programs[int(reader.model_program[i])]["input_shapes"][0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
    fp, params, ints = reader.read(i)
    sd = graphs.unflatten_state_dict(torch.from_numpy(params), reader.layout(fp), torch.from_numpy(ints))
    program = graphs.load_program(reader.program_bytes(int(reader.model_program[i])))
    module = program.module()
    module.load_state_dict(sd, strict=False)
    missing = set(module.state_dict()) - set(sd)
    assert not missing, missing  # every tensor the program reads comes from the row
    with torch.no_grad():
        return x, module(x)


def _mixed_zoo(path, programs: bool = True):
    """Six CNNs of one layout: relu (even) and tanh (odd), labelled ``act``; returns the models."""
    models = [_cnn(("relu", "tanh")[i % 2], i) for i in range(6)]
    with ZooWriter(path) as w:
        index = {}
        for i, m in enumerate(models):
            act = ("relu", "tanh")[i % 2]
            layout, program = graphs.trace_program(m, CNN_EXAMPLE)
            if programs and act not in index:
                index[act] = w.add_program(layout, program, name=f"cnn-{act}")
            w.add(m, layout, labels={"act": act, "seed": i}, program=index.get(act, -1))
    return models


# ---------------------------------------------------------------- one program per function


def test_two_activations_under_one_layout_get_two_programs_and_each_row_runs_its_own(tmp_path):
    models = _mixed_zoo(tmp_path / "zoo.h5")
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert len(r.fingerprints) == 1
        assert [p["name"] for p in r.programs] == ["cnn-relu", "cnn-tanh"]
        assert r.model_program.tolist() == [0, 1, 0, 1, 0, 1]
        for i, m in enumerate(models):
            x, y = _row_output(r, i)
            with torch.no_grad():
                torch.testing.assert_close(y, m(x), rtol=0, atol=0)
    ds = ZooDataset(tmp_path / "zoo.h5", split=None)
    assert ds.runnable and [g.program.item() for g in ds] == [0, 1, 0, 1, 0, 1]


def test_reader_refuses_a_program_index_past_the_programs(tmp_path):
    _mixed_zoo(tmp_path / "zoo.h5")
    for bad in (2, -2):
        with h5py.File(tmp_path / "zoo.h5", "r+") as f:
            f["models/program"][3] = bad
        with pytest.raises(ZooFormatError, match="model 3"):
            ZooReader(tmp_path / "zoo.h5")


# ---------------------------------------------------------------- convert and the importers


def test_convert_stores_the_factory_program_and_none_for_embedded_layouts(tmp_path, monkeypatch, capsys):
    install_factories(tmp_path, monkeypatch)
    from wg_robust_models import MLP

    src = tmp_path / "ckpts"
    src.mkdir()
    models = []
    for i in range(3):
        torch.manual_seed(i)
        models.append(MLP().eval())
        torch.save(models[-1].state_dict(), src / f"m{i}.pt")
    rc, out, err = cli(capsys, "convert", src, tmp_path / "zoo.h5", "--model", "wg_robust_models:make", "--workers",
                       0, "--quiet")
    assert rc == 0, err
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert [p["name"] for p in r.programs] == ["make"]
        assert r.programs[0]["fingerprint"] == r.fingerprints[0]
        assert r.model_program.tolist() == [0, 0, 0]
        for i, source in enumerate(r.labels("source")):
            m = models[int(source[1])]
            x, y = _row_output(r, i)
            with torch.no_grad():
                torch.testing.assert_close(y, m(x), rtol=0, atol=0)
        layout_json = r.layout_json(r.fingerprints[0])
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    torch.save({**models[0].state_dict(), "layout": layout_json}, embedded / "e.pt")
    rc, out, err = cli(capsys, "convert", embedded, tmp_path / "emb.h5", "--workers", 0, "--quiet")
    assert rc == 0, err
    with ZooReader(tmp_path / "emb.h5") as r:
        assert r.programs == () and r.model_program.tolist() == [-1]


def test_small_cnn_zoo_import_stores_one_program_per_activation_used(tmp_path):
    weights, rows = write_small_cnn_zoo(tmp_path / "mnist", n_runs=3, steps=(0, 86))
    n = import_small_cnn_zoo(tmp_path / "mnist", tmp_path / "zoo.h5", block_rows=3)  # blocks cut across runs
    assert n == 6
    with ZooReader(tmp_path / "zoo.h5") as r:
        names = [p["name"] for p in r.programs]
        assert sorted(names) == ["small-cnn-relu", "small-cnn-sigmoid", "small-cnn-tanh"]
        acts = r.labels("config.activation").tolist()
        assert acts == [row["config.activation"] for row in rows]
        assert [names[p] for p in r.model_program] == [f"small-cnn-{a}" for a in acts]
        for i, act in enumerate(acts):
            x, y = _row_output(r, i)
            expected = tf_cnn_forward(weights[i], x.numpy().transpose(0, 2, 3, 1), act)  # NHWC, float64
            torch.testing.assert_close(y, torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-6)


def test_small_cnn_zoo_rows_with_an_unknown_activation_have_no_program(tmp_path):
    import gzip

    write_small_cnn_zoo(tmp_path / "mnist", n_runs=2, steps=(0,))
    path = tmp_path / "mnist" / "metrics.csv.gz"
    with gzip.open(path, "rt") as fh:
        text = fh.read().replace(",tanh,", ",swish,")
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    with pytest.warns(UserWarning, match="'swish'.*without a program"):
        import_small_cnn_zoo(tmp_path / "mnist", tmp_path / "zoo.h5")
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert [p["name"] for p in r.programs] == ["small-cnn-relu"]
        assert r.model_program.tolist() == [0, -1]


def test_checkpoint_dirs_import_stores_a_program_per_config_function(tmp_path):
    written = write_model_zoos_runs(tmp_path / "runs", n_runs=2, epochs=1)
    import_checkpoint_dirs(tmp_path / "runs", tmp_path / "zoo.h5", model_zoo_factory)
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert len(r.fingerprints) == 1 and len(r.programs) == 2  # tanh and relu runs share the layout
        assert {p["name"] for p in r.programs} == {"model_zoo_factory"}
        for i, source in enumerate(r.labels("source")):
            sd, _, run = written[source]
            m = ModelZooCNN(1, ("tanh", "relu")[run % 2]).eval()
            m.load_state_dict(sd)
            assert r.model_program[i] == run
            x, y = _row_output(r, i)
            with torch.no_grad():
                torch.testing.assert_close(y, m(x), rtol=0, atol=0)


def test_inr_folder_import_stores_the_siren_program(tmp_path):
    written = write_dwsnets_mnist_inrs(tmp_path, per_class=1, classes=(0, 3))
    import_inr_folder(tmp_path / "mnist-inrs", tmp_path / "zoo.h5")
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert [p["name"] for p in r.programs] == ["siren"]
        assert r.model_program.tolist() == [0] * len(written)
        for i, source in enumerate(r.labels("source")):
            inr = DWSNetsINR()
            inr.load_state_dict(written[source][0])
            x, y = _row_output(r, i)
            with torch.no_grad():
                torch.testing.assert_close(y, inr(x), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- add-program


def test_add_program_where_makes_a_zoo_without_programs_runnable(tmp_path, monkeypatch, capsys):
    models = _mixed_zoo(tmp_path / "zoo.h5", programs=False)
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    assert not ZooDataset("zoo.h5", split=None).runnable
    rc, out, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_tanh", "--example-input-shape",
                       "1,1,8,8", "--where", "act=tanh")
    assert rc == 0, err
    assert "given to 3 models; 3 of 6 models now have a program" in out
    with ZooReader("zoo.h5") as r:
        assert r.model_program.tolist() == [-1, 0, -1, 0, -1, 0]
    rc, out, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_relu", "--example-input-shape",
                       "1,1,8,8")  # no --where: every model without a program, so only the relu ones
    assert rc == 0, err
    assert "given to 3 models; 6 of 6 models now have a program" in out
    with ZooReader("zoo.h5") as r:
        assert r.model_program.tolist() == [1, 0, 1, 0, 1, 0]
        assert [p["name"] for p in r.programs] == ["make_tanh", "make_relu"]
        for i, m in enumerate(models):
            x, y = _row_output(r, i)
            with torch.no_grad():
                torch.testing.assert_close(y, m(x), rtol=0, atol=0)
    assert ZooDataset("zoo.h5", split=None).runnable
    # the same function again is stored once; --replace with --where repoints only what it selects
    rc, out, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_relu", "--example-input-shape",
                       "1,1,8,8", "--where", "seed=1", "--replace")
    assert rc == 0, err
    assert "program 1 (make_relu) given to 1 models" in out
    with ZooReader("zoo.h5") as r:
        assert len(r.programs) == 2 and r.model_program.tolist() == [1, 1, 1, 0, 1, 0]
        assert r.labels("act").tolist() == ["relu", "tanh"] * 3  # labels and weights untouched
        assert r.num_models == 6


def test_add_program_refusals_are_one_line(tmp_path, monkeypatch, capsys):
    _mixed_zoo(tmp_path / "zoo.h5", programs=False)
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    with ZooReader("zoo.h5") as r:
        fp = r.fingerprints[0]
    before = (tmp_path / "zoo.h5").read_bytes()
    shape = ("--example-input-shape", "1,1,8,8")
    rc, _, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_other", *shape)
    assert_one_line_error(rc, err, "is not an architecture of zoo.h5", fp)
    rc, _, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_tanh", *shape, "--where", "actv=tanh")
    assert_one_line_error(rc, err, "has no label 'actv'", "act")
    rc, _, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_tanh", *shape, "--where", "act=Tanh")
    assert_one_line_error(rc, err, "act=Tanh", "relu, tanh")
    rc, _, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_tanh", *shape, "--where", "seed=one")
    assert_one_line_error(rc, err, "'one' is not a number")
    rc, _, err = cli(capsys, "add-program", "zoo.h5", "--model", "nets.py:make_tanh", *shape, "--where", "act")
    assert_one_line_error(rc, err, "LABEL=VALUE")
    rc, _, err = cli(capsys, "add-program", "missing.h5", "--model", "nets.py:make_tanh", *shape)
    assert_one_line_error(rc, err, "no zoo at missing.h5")
    assert (tmp_path / "zoo.h5").read_bytes() == before  # nothing was written


# ---------------------------------------------------------------- merge


def test_merge_carries_programs_and_keeps_models_without_one(tmp_path):
    a_models = _mixed_zoo(tmp_path / "a.h5")  # programs relu (0), tanh (1)
    b_models = [_cnn("tanh", 10), _cnn("relu", 11), _cnn("relu", 12)]
    with ZooWriter(tmp_path / "b.h5") as w:
        layout, relu = graphs.trace_program(b_models[1], CNN_EXAMPLE)
        index = w.add_program(layout, relu, name="cnn-relu")  # b's program 0 is a's program 0
        w.add(b_models[0], layout, labels={"act": "tanh", "seed": 10})  # no program
        w.add(b_models[1], layout, labels={"act": "relu", "seed": 11}, program=index)
        w.add(b_models[2], layout, labels={"act": "relu", "seed": 12}, program=index)
    assert merge_zoos([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5", progress=False) == 9
    with ZooReader(tmp_path / "m.h5") as r:
        assert [p["name"] for p in r.programs] == ["cnn-relu", "cnn-tanh"]
        assert r.model_program.tolist() == [0, 1, 0, 1, 0, 1, -1, 0, 0]
        for i, m in enumerate(a_models + b_models):
            if r.model_program[i] >= 0:
                x, y = _row_output(r, i)
                with torch.no_grad():
                    torch.testing.assert_close(y, m(x), rtol=0, atol=0)
