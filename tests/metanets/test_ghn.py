"""GHN: exact shapes/dtypes for every catalogue network, equivariance of the noise mode, BN statistics,
meta-training lowers the loss, clear errors, and train.py/eval.py/metanets.predict end to end."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import eval as eval_script
import graphs
import train as train_script
from datasets.archs import build_module, make_archs, sample_archs
from datasets.zoo.data import load_digits_data
from metanets.hyper import GHN, ArchGraph, GHNConfig, full_state_dict, functional_forward, recompute_bn_stats
from metanets.hyper.meta import GHNLoss
from tests.equivariance import run
from tests.graphs.catalogue import ALL_CASES


def _traced(case):
    if case.hf:
        pytest.importorskip("transformers")
    model = case.build()
    kwargs = case.kwargs() if case.kwargs else None
    inputs = case.inputs()
    return model, inputs, kwargs, graphs.trace(model, inputs, kwargs)


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    return GHN(GHNConfig(hidden=16, layers=2, rank=8)).eval()


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_predicts_every_parameter_with_exact_shape_and_dtype(case, ghn):
    model, inputs, kwargs, layout = _traced(case)
    with torch.no_grad():
        params = ghn(ArchGraph.of(layout, ghn.config.hops))
        sd = full_state_dict(model, params)
        ref = model.state_dict()
        assert list(sd) == list(ref)
        for k, v in ref.items():
            assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, k
        trainable = {n for n, _ in model.named_parameters()}  # every trainable tensor is predicted, not copied
        assert trainable <= set(params) | {a for p in layout.params for a in p.aliases}
        out = run(lambda *a, **k: functional_forward(model, params, *a, **k), inputs, kwargs)
        assert torch.isfinite(out).all()
        model.load_state_dict(sd)  # and it loads as a state_dict


def _mlp_layout(dtype=torch.float64):
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    return net, graphs.trace(net, (torch.zeros(2, 5, dtype=dtype),))


def test_noise_mode_is_equivariant_and_sensitive():
    torch.manual_seed(1)
    ghn = GHN(GHNConfig(hidden=16, layers=2, rank=8, symmetry_breaking="noise")).double().eval()
    net, layout = _mlp_layout()
    arch = ArchGraph.of(layout, ghn.config.hops)
    codes = ghn.unit_codes(arch, torch.Generator().manual_seed(0))
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(3))
    permuted = codes.clone()
    for g, p in perm.items():  # unit i of group g takes the code of unit perm[i] (graphs' gather convention)
        rows = (arch.unit_group == g).nonzero().flatten()
        permuted[rows] = codes[rows[p]]
    with torch.no_grad():
        a, b = ghn(arch, codes), ghn(arch, permuted)
    expect = graphs.apply_symmetry(a, layout, perm)
    for k in a:
        torch.testing.assert_close(b[k], expect[k], rtol=0, atol=1e-12)
    # sensitivity: the permutation moved something, and fresh codes give other weights
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        c = ghn(arch, ghn.unit_codes(arch, torch.Generator().manual_seed(1)))
    assert (a["0.weight"] - c["0.weight"]).abs().max() > 1e-3


def test_position_mode_is_deterministic_and_breaks_symmetry(ghn):
    net, layout = _mlp_layout(torch.float32)
    arch = ArchGraph.of(layout, ghn.config.hops)
    with torch.no_grad():
        a, b = ghn(arch), ghn(arch)
    for k in a:
        assert torch.equal(a[k], b[k])
    w = a["2.weight"]  # hidden -> hidden: no two units may get the same weights
    assert torch.cdist(w, w).add(torch.eye(len(w)) * 1e9).min() > 1e-3


def test_prediction_depends_on_the_architecture():
    # at initialization the decoder reads the unit codes only (its context paths start at zero), so
    # perturb every weight the way training would before asking for architecture dependence
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=16, layers=2, rank=8)).eval()
    with torch.no_grad():
        for p in ghn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net, layout = _mlp_layout(torch.float32)
    net2 = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    with torch.no_grad():
        a = ghn(ArchGraph.of(layout, ghn.config.hops))
        c = ghn(ArchGraph.of(graphs.trace(net2, (torch.zeros(2, 5),)), ghn.config.hops))
    for k in ("0.weight", "2.weight", "4.weight"):  # same shapes, different architecture
        assert (a[k] - c[k]).abs().max() > 1e-3, k


def test_bn_statistics_are_recomputed_as_cumulative_averages(ghn):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(36, 2))
    layout = graphs.trace(net, (torch.zeros(2, 1, 5, 5),))
    with torch.no_grad():
        params = ghn(ArchGraph.of(layout, ghn.config.hops))
    assert torch.equal(params["1.running_mean"], torch.zeros(4)) and torch.equal(params["1.running_var"], torch.ones(4))
    batches = [torch.randn(8, 1, 5, 5) for _ in range(3)]
    new = recompute_bn_stats(net, params, batches)
    with torch.no_grad():
        pre = torch.cat([nn.functional.conv2d(x, params["0.weight"], params["0.bias"]) for x in batches])
    # cumulative average of the per-batch means / unbiased variances
    means = torch.stack([nn.functional.conv2d(x, params["0.weight"], params["0.bias"]).mean((0, 2, 3))
                         for x in batches])
    torch.testing.assert_close(new["1.running_mean"], means.mean(0), rtol=1e-5, atol=1e-6)
    assert new["1.running_var"].sub(pre.var((0, 2, 3))).abs().max() < 0.2 * pre.var((0, 2, 3)).max()
    assert net[1].training and torch.equal(net[1].running_mean, torch.zeros(4))  # module untouched


def test_meta_training_lowers_the_loss():

    torch.manual_seed(0)
    data = load_digits_data()
    specs, _ = sample_archs(12, (1, 8, 8), 10, seed=0, n_ood=0)
    nets = [build_module(s) for s in specs[:4]]
    archs = [ArchGraph.of(graphs.trace(m, (s.example_input(),)), 2) for m, s in zip(nets, specs, strict=False)]
    ghn = GHN(GHNConfig(hidden=32, layers=2, rank=16, hops=2))
    loss_fn = GHNLoss(ghn)
    opt = torch.optim.Adam(ghn.parameters(), lr=2e-3)
    x, y = data.x_train[:128], data.y_train[:128]
    losses = []
    for _ in range(25):
        loss, _ = loss_fn(nets, archs, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_bad_architectures_fail_clearly(ghn):
    class FiveD(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 2, 2, 2, 2, 2))

        def forward(self, x):
            return x * self.w.sum()

    layout = graphs.trace(FiveD(), (torch.zeros(2, 3),))
    with pytest.raises(ValueError, match="'w' has 6 axes"):
        ArchGraph.of(layout)
    with pytest.raises(ValueError, match="symmetry_breaking"):
        GHNConfig(symmetry_breaking="random")


@pytest.fixture(scope="module")
def archs_file(tmp_path_factory):

    path = tmp_path_factory.mktemp("archs") / "archs.h5"
    make_archs(12, str(path), (1, 8, 8), 10, dataset="digits", seed=0, n_ood=1, families=("cell", "mlp", "vit"),
               progress=False)
    return str(path)


def test_train_eval_predict_end_to_end(archs_file, tmp_path):
    out = str(tmp_path / "ghn")
    summary = train_script.main(["--task", "ghn", "--archs", archs_file, "--dataset", "digits", "--epochs", "2",
                                 "--meta-batch", "2", "--max-steps", "3", "--hidden", "16", "--layers", "1",
                                 "--rank", "8", "--val-archs", "1", "--out", out, "--quiet", "--threads", "1"])
    assert summary["steps"] == 3 and 0.0 <= summary["best_val"]["accuracy"] <= 1.0
    res = eval_script.main([os.path.join(out, "best.pt"), "--splits", "test,wide", "--max-archs", "1",
                            "--finetune-epochs", "1", "--trained-epochs", "1"])
    on_disk = json.load(open(os.path.join(out, "ghn_metrics.json")))
    assert set(on_disk["splits"]) == {"test", "wide"} and len(res["splits"]["test"]["predicted"]) == 2
    assert os.path.isfile(os.path.join(out, "ghn_finetune.png"))
    # a user's own network: predicted, saved, loadable
    user = tmp_path / "mynet.py"
    user.write_text("import torch\nfrom torch import nn\n"
                    "def make():\n    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), "
                    "nn.Flatten(), nn.Linear(216, 10))\n")
    res = eval_script.main([os.path.join(out, "best.pt"), "--save", str(tmp_path / "my.safetensors"), "--model",
                            f"{user}:make", "--input-shape", "1,1,8,8", "--bn-data", "digits"])
    loaded = graphs.load_checkpoint(str(tmp_path / "my.safetensors"))
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(216, 10))
    net.load_state_dict(loaded)
    assert res["parameters"] == sum(p.numel() for p in net.parameters()) and loaded["1.running_var"].ne(1).any()
    with pytest.raises(ValueError, match="--bn-data mnist1d: its inputs of shape"):  # 1-d signals, a 2-d CNN
        pytest.importorskip("mnist1d")
        eval_script.main([os.path.join(out, "best.pt"), "--save", str(tmp_path / "x.safetensors"), "--model",
                          f"{user}:make", "--input-shape", "1,1,8,8", "--bn-data", "mnist1d"])
    # the old spelling forwards to the new one
    proc = subprocess.run([sys.executable, "-m", "metanets.predict", os.path.join(out, "best.pt"),
                           str(tmp_path / "old.safetensors"), "--model", f"{user}:make", "--input-shape", "1,1,8,8"],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__)))))
    assert proc.returncode == 0, proc.stderr
    assert "is now `python eval.py" in proc.stderr and "--save" in proc.stderr
    assert set(graphs.load_checkpoint(str(tmp_path / "old.safetensors"))) == set(loaded)


def test_ghn_task_errors(archs_file, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: --archs is required
        train_script.main(["--task", "ghn", "--out", str(tmp_path)])
    assert "--task ghn needs --archs ARCHS.h5" in capsys.readouterr().err
    pytest.importorskip("mnist1d")  # the optional data extra; installed by make setup
    with pytest.raises(ValueError, match="inputs"):  # architectures for 8x8 images, data of length 40
        train_script.main(["--task", "ghn", "--archs", archs_file, "--dataset", "mnist1d", "--out", str(tmp_path),
                           "--quiet", "--max-steps", "1"])
