"""Checkpoints that used to be taken without a word: float64 into a float32 layout, DDP-wrapped keys."""

import json
import warnings

import numpy as np
import pytest
import torch
from cli_helpers import FACTORY_MODULE, assert_one_line_error, cli, install_factories, warning_lines
from importer_fixtures import model_zoo_factory, write_dwsnets_mnist_inrs, write_model_zoos_runs
from zoo_models import make_mlp

import graphs
from datasets import ZooReader, ZooWarning, ZooWriter
from datasets.importers.checkpoint_dirs import import_checkpoint_dirs
from datasets.importers.inr_folder import import_inr_folder

RUN = ("--workers", "0", "--quiet")


@pytest.fixture
def factories(tmp_path, monkeypatch):
    return install_factories(tmp_path, monkeypatch)


def _double_checkpoints(folder, n=3):
    folder.mkdir()
    sds = []
    for i in range(n):
        sd = {k: v.double() + 1e-9 * (i + 1) for k, v in make_mlp(i).state_dict().items()}  # not float32-exact
        torch.save(sd, folder / f"d{i}.pt")
        sds.append(sd)
    return sds


def test_float64_into_a_float32_layout_warns_once_with_the_rounding_error(factories, capsys):
    sds = _double_checkpoints(factories / "f64")
    rc, text, err = cli(capsys, "convert", factories / "f64", factories / "z.h5", "--model", f"{FACTORY_MODULE}:make",
                        *RUN)
    assert rc == 0 and "added 3 models" in text, err
    warned = warning_lines(err)
    assert len(warned) == 1 and "3 models had float64 weights" in warned[0] and "float32" in warned[0], err
    vecs = [torch.cat([sd[k].reshape(-1) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")]).numpy()
            for sd in sds]
    with ZooReader(factories / "z.h5") as r:
        stored = [r.read(i)[1] for i in range(3)]
        order = [int(s[1]) for s in r.labels("source")]
    worst = max(np.abs(stored[j].astype(np.float64) - vecs[i]).max() for j, i in enumerate(order))
    assert 0 < worst < 1e-7 and f"largest rounding error {worst:.3g}" in warned[0]
    # traced in float64, the same checkpoints are stored exactly and without a warning
    rc, _, err = cli(capsys, "convert", factories / "f64", factories / "z64.h5", "--model",
                     f"{FACTORY_MODULE}:make_double", *RUN)
    assert rc == 0 and not warning_lines(err), err
    with ZooReader(factories / "z64.h5") as r:
        assert all(np.array_equal(r.read(j)[1], vecs[int(s[1])]) for j, s in enumerate(r.labels("source")))


def test_writer_records_rounding_and_float32_input_is_silent(mlp_layout, tmp_path):
    with pytest.warns(ZooWarning, match="1 models had float64 weights"), ZooWriter(tmp_path / "a.h5") as w:
        w.add({k: v.double() / 3 for k, v in make_mlp(0).state_dict().items()}, mlp_layout)
    assert w.rounding.models == 1 and 0 < w.rounding.max_rel <= 2 ** -24
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZooWarning)
        with ZooWriter(tmp_path / "b.h5") as w:
            w.add(make_mlp(0), mlp_layout)
            w.add(make_mlp(1).double(), mlp_layout)  # float64, but float32-exact: nothing is lost
    assert w.rounding.models == 0
    with ZooReader(tmp_path / "b.h5") as r:
        assert np.array_equal(r.read(1)[1], graphs.flatten_state_dict(make_mlp(1), mlp_layout).numpy())


def test_ddp_prefixed_checkpoints_convert_like_plain_ones(factories, capsys, mlp_layout):
    src = factories / "ddp"
    src.mkdir()
    plain = make_mlp(0).state_dict()
    torch.save({f"module.{k}": v for k, v in plain.items()}, src / "ddp.pt")
    torch.save({"state_dict": {f"module._orig_mod.{k}": v for k, v in plain.items()}}, src / "compiled.pt")
    torch.save({"model": {f"module.{k}": v for k, v in make_mlp(1, 5).state_dict().items()}}, src / "sized.pt")
    rc, text, err = cli(capsys, "convert", src, factories / "z.h5", "--model", f"{FACTORY_MODULE}:make_sized", *RUN)
    assert rc == 0 and "added 3 models" in text, err
    want = graphs.flatten_state_dict(plain, mlp_layout).numpy()
    with ZooReader(factories / "z.h5") as r:
        by_source = {s: r.read(i)[1] for i, s in enumerate(r.labels("source"))}
        assert len(r.fingerprints) == 2  # the width-5 model got its own layout, sized from the unwrapped keys
    assert np.array_equal(by_source["ddp.pt"], want) and np.array_equal(by_source["compiled.pt"], want)
    # an embedded layout: unwrapped too
    emb = factories / "emb"
    emb.mkdir()
    torch.save({"model": {f"module.{k}": v for k, v in plain.items()}, "layout": mlp_layout.to_json()}, emb / "e.pt")
    rc, _, err = cli(capsys, "convert", emb, factories / "e.h5", *RUN)
    assert rc == 0, err
    # a partly prefixed state_dict is not a wrapper's: its keys are reported as they are
    bad = factories / "bad"
    bad.mkdir()
    torch.save({"module.fc1.weight": plain["fc1.weight"], **{k: v for k, v in plain.items() if k != "fc1.weight"}},
               bad / "half.pt")
    rc, _, err = cli(capsys, "convert", bad, factories / "b.h5", "--model", f"{FACTORY_MODULE}:make", *RUN)
    assert_one_line_error(rc, err, "half.pt", "unexpected ['module.fc1.weight']")


def test_importers_unwrap_ddp_checkpoints(tmp_path):
    written = write_model_zoos_runs(tmp_path / "runs", n_runs=1, epochs=1)
    for rel, (sd, _, _) in written.items():
        torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "runs" / rel)
    n = import_checkpoint_dirs(tmp_path / "runs", tmp_path / "cd.h5", model_zoo_factory)  # input guessed: 1 x 32 x 32
    assert n == 2
    with ZooReader(tmp_path / "cd.h5") as r:
        for i, source in enumerate(r.labels("source")):
            sd = written[source][0]
            assert np.array_equal(r.read(i)[1], torch.cat([sd[p.name].reshape(-1) for p in r.layout(r.fingerprints[0])
                                                           .params]).numpy())
    inrs = write_dwsnets_mnist_inrs(tmp_path / "dataset", per_class=1)
    for rel, (sd, _, _) in inrs.items():
        torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dataset" / "mnist-inrs" / rel)
    assert import_inr_folder(tmp_path / "dataset" / "mnist-inrs", tmp_path / "inr.h5") == len(inrs)
    with ZooReader(tmp_path / "inr.h5") as r:
        assert "module.seq.0.weight" not in r.label_names and set(r.labels("class")) == {0, 3, 7}
        first = inrs[r.labels("source")[0]][0]
        assert np.array_equal(r.read(0)[1][:first["seq.0.weight"].numel()], first["seq.0.weight"].reshape(-1).numpy())


def test_factory_failures_and_both_flag_spellings_in_convert(factories, capsys):
    src = factories / "src"
    src.mkdir()
    torch.save(make_mlp(0).state_dict(), src / "m.pt")
    rc, _, err = cli(capsys, "convert", src, factories / "z.h5", "--model", f"{FACTORY_MODULE}:boom", *RUN)
    assert_one_line_error(rc, err, f"the factory {FACTORY_MODULE}:boom raised KeyError: 'fc9.weight'",
                          f"{FACTORY_MODULE}.py:")
    (factories / "syntax_nets.py").write_text("def make(:\n")
    rc, _, err = cli(capsys, "convert", src, factories / "z.h5", "--model", "syntax_nets:make", *RUN)
    assert_one_line_error(rc, err, "importing 'syntax_nets'", "SyntaxError", "syntax_nets.py:1")
    for flag in ("--input-shape", "--example-input-shape"):
        out = factories / f"z{flag}.h5"
        rc, _, err = cli(capsys, "convert", src, out, "--model", f"{FACTORY_MODULE}:make", flag, "5,4", *RUN)
        with ZooReader(out) as r:
            layout = r.layout(r.fingerprints[0])
        assert rc == 0 and json.loads(layout.to_json())["params"], err
    rc, _, err = cli(capsys, "convert", src, factories / "q.h5", "--model", f"{FACTORY_MODULE}:make", "--input-shape",
                     "5,7", *RUN)
    assert_one_line_error(rc, err, "torch.export could not capture")
