"""Probe features through train.py and eval.py: on by default on runnable zoos, fixed or learned, clear refusals."""

import os
import shutil

import h5py
import pytest
import torch
from torch_geometric.data import Batch

import eval as eval_script
import graphs
import tasks
import train as train_script
from datasets import ZooDataset, ZooError, ZooReader
from datasets.zoo.data import load_digits_data
from tests.test_train_eval import _train  # the same tiny runner; the cnn_zoo fixture is conftest's


def _test_batch(zoo: str) -> tuple[Batch, graphs.Layout]:
    ds = ZooDataset(zoo, "test", labels=[])
    return ds.get_batch(range(min(6, len(ds)))), next(iter(ds.layouts.values()))


def _permuted(batch: Batch, layout: graphs.Layout, seed: int) -> Batch:
    """The batch with every network replaced by a random neuron permutation of itself (same function)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in batch.to_data_list():
        g.layout = layout
        sd = graphs.to_state_dict(g)
        perm = graphs.random_symmetry(layout, generator=gen)
        h = graphs.to_graph(graphs.apply_symmetry(sd, layout, perm), layout)
        h.program, h.zoo_index, h.y = g.program, g.zoo_index, g.y
        out.append(h)
    return Batch.from_data_list(out)


def test_probes_are_on_by_default_learned_invariant_and_reload(cnn_zoo, tmp_path):
    with ZooReader(cnn_zoo) as r:
        # relu, tanh and gelu CNNs (with and without dropout layers) share one layout; each has its program
        assert {p["name"] for p in r.programs} == {"cnn-relu", "cnn-tanh", "cnn-gelu"}
        assert (r.model_program >= 0).all()
    out, _ = _train(tmp_path, "--data", cnn_zoo, "--epochs", "2")
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["model_config"]["gmn"]["probe_dim"] == 16
    learned = ckpt["model"]["model.probe.probes"]
    assert learned.shape == (16, 1, 8, 8)
    x = load_digits_data().x_train
    start = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:16]]
    assert not torch.allclose(learned, start)  # trained: the probes moved from the digits they started as
    assert (learned - start).abs().max() < 1.0  # ... but not to noise
    res = eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    assert -1 <= res["kendall_tau"] <= 1

    model = tasks.load_model(os.path.join(out, "best.pt")).double()
    batch, layout = _test_batch(cnn_zoo)
    batch.x, batch.edge_attr = batch.x.double(), batch.edge_attr.double()
    with torch.no_grad():
        pred = model(batch)
        perm = _permuted(batch, layout, seed=1)
        perm.x, perm.edge_attr = perm.x.double(), perm.edge_attr.double()
        torch.testing.assert_close(model(perm), pred, rtol=1e-7, atol=1e-8)  # probes run in float32
        # sensitivity: the probe features reach the prediction
        model.model.probe.probes.mul_(-1.0)
        assert (model(batch) - pred).abs().max() > 1e-4


def test_fixed_probes_and_probes_off(cnn_zoo, tmp_path):
    out, _ = _train(tmp_path / "fixed", "--data", cnn_zoo, "--epochs", "1", "--probes", "4", "--no-probe-learned")
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    x = load_digits_data().x_train
    start = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:4]]
    assert ckpt["model_config"]["gmn"]["probe_dim"] == 4
    torch.testing.assert_close(ckpt["model"]["model.probe.probes"], start, rtol=0, atol=0)
    out, _ = _train(tmp_path / "off", "--data", cnn_zoo, "--epochs", "1", "--probes", "0")
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["model_config"]["gmn"]["probe_dim"] == 0 and not any("probe.probes" in k for k in ckpt["model"])
    assert eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])["rmse"] > 0


def test_zoo_without_programs_and_baselines(cnn_zoo, tmp_path, capsys):
    bare = str(tmp_path / "bare.h5")
    shutil.copy(cnn_zoo, bare)
    with h5py.File(bare, "r+") as f:
        del f["programs"], f["models/program"]
    out, _ = _train(tmp_path / "auto", "--data", bare, "--epochs", "1")
    assert "probe features off" in capsys.readouterr().out
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["model_config"]["gmn"]["probe_dim"] == 0
    with pytest.raises(ZooError, match=r"python -m datasets add-program .* --model FILE\.py:make"):
        train_script.main(["--data", bare, "--probes", "8", "--out", str(tmp_path / "x"), "--quiet"])
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--model", "statnn", "--probes", "8", "--out", str(tmp_path / "y")])
    assert "--probes needs a graph model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--probes", "-2", "--out", str(tmp_path / "z")])
    assert "--probes -2: give a number of probes" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--probe-data mnist1d: its inputs have shape \(1, 40\).*take \(1, 8, 8\)"):
        _train(tmp_path / "shape", "--data", cnn_zoo, "--epochs", "1", "--probe-data", "mnist1d")
    assert not os.path.exists(tmp_path / "shape" / "run" / "best.pt")
    # a baseline on a runnable zoo: probes are simply off
    out, _ = _train(tmp_path / "statnn", "--data", cnn_zoo, "--model", "statnn", "--epochs", "1")
    assert not any("probe.probes" in k for k in torch.load(os.path.join(out, "best.pt"), weights_only=True)["model"])
