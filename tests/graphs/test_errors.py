import pytest
import torch
from torch import nn

import graphs


class RBF(nn.Module):
    def __init__(self):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(7, 4))

    def forward(self, x):
        return torch.exp(-torch.cdist(x, self.centers))


class WithRBF(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.rbf = RBF()
        self.out = nn.Linear(7, 2)

    def forward(self, x):
        return self.out(self.rbf(self.inp(x)))


def test_parameterized_op_without_rule_names_op_and_module():
    with pytest.raises(graphs.UnsupportedNetworkError) as info:
        graphs.trace(WithRBF(), torch.randn(2, 3))
    err = info.value
    assert "cdist" in err.op and err.module == "rbf"
    assert "fix:" in str(err) and "module: rbf" in str(err)


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(6, 5), nn.Linear(5, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(torch.relu(self.b(torch.cumsum(h, dim=-1))))  # cumsum depends on the order of h


def test_order_dependent_op_fixes_its_group_and_stays_sound():
    m = Cumulative().double()
    lay = graphs.trace(m, torch.randn(2, 3, dtype=torch.float64))
    assert lay.group_sizes() == [5]
    a_out = lay.param("a.weight").axes[0]
    group = lay.groups[a_out[1]]
    assert group.fixed and any("order" in r for r in group.reasons)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return x


def test_export_failure_is_reported_with_a_fix():
    with pytest.raises(graphs.UnsupportedNetworkError, match="torch.export could not capture"):
        graphs.trace(DataDependent(), torch.randn(2, 3))


def test_trace_rejects_non_modules():
    with pytest.raises(TypeError, match="nn.Module"):
        graphs.trace(nn.Linear(2, 2).state_dict(), torch.randn(1, 2))


def test_state_dict_mismatch_names_keys_and_shapes():
    lay = graphs.trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    wrong = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).state_dict()
    with pytest.raises(graphs.LayoutMismatchError, match=r"0.weight: \(5, 3\) != \(4, 3\)"):
        graphs.to_graph(wrong, lay)
    sd = dict(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict())
    del sd["2.bias"]
    sd["extra"] = torch.zeros(1)
    with pytest.raises(graphs.LayoutMismatchError, match=r"missing \['2.bias'\].*unexpected \['extra'\]"):
        graphs.flatten_state_dict(sd, lay)
    with pytest.raises(graphs.LayoutMismatchError, match="vector has shape"):
        graphs.vector_to_graph(torch.zeros(3), lay)


def test_checkpoints_load_safely(tmp_path):
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graphs.save_checkpoint(m.state_dict(), tmp_path / "m.safetensors")
    graphs.save_checkpoint(m.state_dict(), tmp_path / "m.pt")
    torch.save({"epoch": 3, "state_dict": m.state_dict()}, tmp_path / "wrapped.pt")
    for name in ("m.safetensors", "m.pt", "wrapped.pt"):
        sd = graphs.load_checkpoint(tmp_path / name)
        assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    torch.save(m, tmp_path / "pickled_module.pt")  # needs code execution to load
    with pytest.raises(graphs.CheckpointError, match="weights_only=True"):
        graphs.load_checkpoint(tmp_path / "pickled_module.pt")
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(graphs.CheckpointError):
        graphs.load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(graphs.CheckpointError, match="not found"):
        graphs.load_checkpoint(tmp_path / "missing.pt")
    torch.save({"lr": 0.1}, tmp_path / "no_tensors.pt")
    with pytest.raises(graphs.CheckpointError, match="holds no state_dict"):
        graphs.load_checkpoint(tmp_path / "no_tensors.pt")


def test_tied_weights_save_to_safetensors(tmp_path):
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    sd = {"emb.weight": emb.weight.detach(), "head.weight": head.weight.detach()}
    graphs.save_checkpoint(sd, tmp_path / "tied.safetensors")
    back = graphs.load_checkpoint(tmp_path / "tied.safetensors")
    assert set(back) == set(sd) and torch.equal(back["head.weight"], sd["emb.weight"])


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    graphs.save_checkpoint({"w": torch.ones(3)}, path)

    def fail(tensors, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(graphs.checkpoints, "save_file", fail)
    with pytest.raises(KeyboardInterrupt):
        graphs.save_checkpoint({"w": torch.zeros(3)}, path)
    assert torch.equal(graphs.load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind
