"""``python -m graphs align|interpolate|merge`` end to end on tiny networks, and their one-line errors."""

import importlib.util
import json

import pytest
import torch

import graphs
from graphs.__main__ import main

NETS = """
import torch
from torch import nn


def cnn():
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def mlp():
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def example_inputs():
    return (torch.zeros(2, 1, 8, 8),)
"""


@pytest.fixture()
def nets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NETS)
    gen = torch.Generator().manual_seed(0)
    for name, make in (("c", "cnn"), ("m", "mlp")):
        for seed in range(3):
            torch.manual_seed(seed)
            net = getattr(_module(tmp_path), make)()
            sd = net.state_dict()
            for k, v in sd.items():  # non-trivial running statistics
                if k.endswith("running_mean"):
                    v.copy_(torch.randn(v.shape, generator=gen))
            torch.save(sd, tmp_path / f"{name}{seed}.pt")
    torch.save({"x": torch.randn(20, 40), "y": torch.randint(0, 10, (20,))}, tmp_path / "d40.pt")
    return tmp_path


def _module(path):
    spec = importlib.util.spec_from_file_location("nets_under_test", path / "nets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_align_command_writes_b_aligned_to_a(nets, capsys):
    assert main(["align", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "out.pt"]) == 0
    assert "cosine similarity" in capsys.readouterr().out
    a, b, out = (torch.load(nets / f, weights_only=True) for f in ("c0.pt", "c1.pt", "out.pt"))
    assert list(out) == list(b) and any(not torch.equal(out[k], b[k]) for k in b)
    net = _module(nets).cnn().eval()
    layout = graphs.trace(net, torch.zeros(2, 1, 8, 8))
    assert graphs.similarity(a, out, layout) > graphs.similarity(a, b, layout)
    x = torch.randn(5, 1, 8, 8)
    net.load_state_dict(b)
    ref = net(x)
    net.load_state_dict(out)
    assert torch.allclose(net(x), ref, atol=1e-5)
    assert main(["align", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "out2.pt", "--method", "activations",
                 "--data", "digits", "--batch", "64"]) == 0
    capsys.readouterr()
    assert main(["align", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "out.pt"]) == 2  # the output policy
    assert "--overwrite" in capsys.readouterr().err
    assert main(["align", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "out.pt", "--overwrite"]) == 0


def test_interpolate_command_writes_json_and_plot(nets, capsys):
    assert main(["interpolate", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "--data", "digits", "--steps", "3",
                 "--out", "res"]) == 0
    assert "loss barrier" in capsys.readouterr().out
    res = json.loads((nets / "res" / "interpolate.json").read_text())
    assert res["norm_stats_recomputed"] is True
    assert set(res["paths"]) == {"naive", "aligned", "aligned, stale BN stats"}
    for p in res["paths"].values():
        assert p["t"] == [0.0, 0.5, 1.0] and len(p["loss"]) == 3 and all(0 <= a <= 1 for a in p["acc"])
    assert (nets / "res" / "interpolate.png").stat().st_size > 1000
    # a .pt data file and a flat MLP (no BatchNorm: no statistics to recompute)
    torch.save({"x": torch.randn(40, 64), "y": torch.randint(0, 10, (40,))}, nets / "d.pt")
    assert main(["interpolate", "m0.pt", "m1.pt", "--model", "nets.py:mlp", "--example-input-shape", "2,64",
                 "--data", "d.pt", "--steps", "2", "--out", "res2"]) == 0
    res = json.loads((nets / "res2" / "interpolate.json").read_text())
    assert res["norm_stats_recomputed"] is False and set(res["paths"]) == {"naive", "aligned"}


def test_merge_command_averages_aligned_networks(nets):
    assert main(["merge", "c0.pt", "c1.pt", "c2.pt", "--model", "nets.py:cnn", "merged.pt"]) == 0
    merged = torch.load(nets / "merged.pt", weights_only=True)
    a = torch.load(nets / "c0.pt", weights_only=True)
    assert list(merged) == list(a) and not torch.equal(merged["0.weight"], a["0.weight"])
    # merging a network with a permuted copy of itself gives it back
    layout = graphs.trace(_module(nets).cnn(), torch.zeros(2, 1, 8, 8))
    torch.save(graphs.apply_symmetry(a, layout, graphs.random_symmetry(layout, torch.Generator().manual_seed(0))),
               nets / "p.pt")
    assert main(["merge", "c0.pt", "p.pt", "--model", "nets.py:cnn", "self.pt"]) == 0
    back = torch.load(nets / "self.pt", weights_only=True)
    assert all(torch.allclose(back[k].float(), a[k].float(), atol=1e-6) for k in a)


@pytest.mark.parametrize("argv, message", [
    (["align", "c0.pt", "m1.pt", "--model", "nets.py:cnn", "o.pt"], "m1.pt does not fit the network"),
    (["merge", "c0.pt", "c1.pt", "m2.pt", "--model", "nets.py:cnn", "o.pt"], "m2.pt does not fit the network"),
    (["merge", "c0.pt", "--model", "nets.py:cnn", "o.pt"], "at least two checkpoints"),
    (["align", "m0.pt", "m1.pt", "--model", "nets.py:mlp", "o.pt"], "torch.export could not capture"),
    (["align", "m0.pt", "missing.pt", "--model", "nets.py:mlp", "o.pt", "--example-input-shape", "2,64"],
     "checkpoint not found"),
    (["align", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "o.pt", "--method", "activations"], "needs --data"),
    (["interpolate", "m0.pt", "m1.pt", "--model", "nets.py:mlp", "--example-input-shape", "2,64", "--data",
      "d40.pt"], "the data's samples have 40 values"),
    (["interpolate", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "--data", "nope"], "use digits, mnist1d"),
    (["interpolate", "c0.pt", "c1.pt", "--model", "nets.py:cnn", "--data", "digits", "--steps", "1"],
     "--steps must be at least 2"),
    (["align", "c0.pt", "c1.pt", "--model", "nets.py:nope", "o.pt"], "has no callable 'nope'"),
])
def test_bad_input_is_one_clear_line(nets, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
