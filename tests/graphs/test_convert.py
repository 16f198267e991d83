import json

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import graphs
from graphs.batch import batch_to_rows, flatten_state_dicts, rows_to_batch
from tests.equivariance import assert_exact_round_trip, assert_graph_equivariant, assert_sound


def mlp(widths=(5, 7, 6, 3)):
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_mlp_groups_graph_and_vector():
    m = mlp().double()
    lay = graphs.trace(m, torch.randn(2, 5, dtype=torch.float64))
    assert lay.group_sizes() == [6, 7]
    assert lay.num_permutable_neurons() == 13
    g = graphs.to_graph(m, lay)
    # 5*7 + 7*6 + 6*3 weights are edges; 3 biases are parameter nodes with 7, 6, 3 edges
    assert g.edge_index.shape[1] == 35 + 42 + 18 + 16
    assert g.num_nodes == 5 + 7 + 6 + 3 + 3
    assert g.edge_attr.shape[1] == 1
    vec = graphs.flatten_state_dict(m, lay)
    assert vec.shape == (lay.num_params,)
    assert torch.equal(graphs.graph_to_vector(g), vec)
    assert_exact_round_trip(m, lay)
    assert_graph_equivariant(m, lay)


def test_symmetry_index_matches_apply_symmetry():
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    lay = graphs.trace(m, torch.randn(2, 2, 6, 6, dtype=torch.float64))
    perm = graphs.random_symmetry(lay, torch.Generator().manual_seed(1))
    vec = graphs.flatten_state_dict(m, lay)
    by_index = vec[graphs.symmetry_index(lay, perm)]
    by_sd = graphs.flatten_state_dict(graphs.apply_symmetry(m.state_dict(), lay, perm), lay)
    assert torch.equal(by_index, by_sd)
    assert not torch.equal(by_index, vec)


def test_conv_kernels_and_flatten_positions_are_packed_edges():
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    lay = graphs.trace(m, torch.randn(2, 1, 4, 4))
    g = graphs.to_graph(m, lay)
    conv_edges = g.edge_type == graphs.EDGE_TYPES.index("conv")
    lin_edges = (g.edge_type == graphs.EDGE_TYPES.index("linear"))
    assert int(conv_edges.sum()) == 3  # 1 input channel -> 3 channels, each a 3x3 kernel vector
    assert int(lin_edges.sum()) == 3 * 2  # 3 channels -> 2 outputs, each a 2x2 position vector
    assert g.edge_attr.shape[1] == 9
    assert torch.equal(g.edge_attr[conv_edges].sort(0).values,
                       m[0].weight.detach().reshape(3, 9).sort(0).values)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7).to(torch.bfloat16)
        self.b = nn.Linear(7, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.to(torch.bfloat16))).float())


def test_mixed_dtypes_round_trip_exactly():
    m = Mixed()
    lay = graphs.trace(m, torch.randn(2, 5))
    assert [p.dtype for p in lay.params] == ["bfloat16", "bfloat16", "float32", "float32"]
    assert lay.float_dtype == "float32"
    assert_exact_round_trip(m, lay)


def test_float64_model_gives_float64_graph():
    m = mlp().double()
    lay = graphs.trace(m, torch.randn(2, 5, dtype=torch.float64))
    assert lay.float_dtype == "float64"
    assert graphs.to_graph(m, lay).edge_attr.dtype == torch.float64


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tok):
        return self.head(torch.tanh(self.mix(self.emb(tok))))


def test_tied_weights_stored_once_and_restored():
    m = Tied().double()
    tok = torch.randint(0, 11, (2, 4))
    lay = graphs.trace(m, tok)
    names = [p.name for p in lay.params]
    assert "emb.weight" in names and "head.weight" not in names
    assert lay.param("emb.weight").aliases == ("head.weight",)
    assert lay.num_params == 11 * 6 + 6 * 6 + 6
    back = graphs.to_state_dict(graphs.to_graph(m, lay))
    assert set(back) == set(m.state_dict())
    assert torch.equal(back["head.weight"], m.head.weight.detach())
    assert_sound(m, lay, (tok,))
    assert lay.group_sizes() == [6]  # the head ties the mixer output to the embedding dimension


def test_int_buffers_are_copied_exactly():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m.train()
    for _ in range(3):
        m(torch.randn(8, 3))
    lay = graphs.trace(m, torch.randn(2, 3))
    assert [b.name for b in lay.int_buffers] == ["1.num_batches_tracked"]
    g = graphs.to_graph(m, lay)
    assert g.ints.tolist() == [3]
    assert_exact_round_trip(m, lay)


def test_layout_json_and_fingerprint_are_stable():
    a = graphs.trace(mlp(), torch.randn(2, 5))
    torch.manual_seed(123)
    b = graphs.trace(mlp(), torch.randn(3, 5))  # other weights, other batch size
    assert a.fingerprint == b.fingerprint
    c = graphs.Layout.from_json(json.dumps(a.to_dict()))
    assert c.fingerprint == a.fingerprint and c == a
    assert graphs.trace(mlp((5, 8, 6, 3)), torch.randn(2, 5)).fingerprint != a.fingerprint


def test_graphs_batch_with_pyg_and_unbatch():
    lay = graphs.trace(mlp(), torch.randn(2, 5))
    nets = [mlp() for _ in range(3)]
    batch = Batch.from_data_list([graphs.to_graph(n, lay) for n in nets])
    assert batch.num_graphs == 3
    assert int(batch.edge_index.max()) < batch.num_nodes
    for net, g in zip(nets, batch.to_data_list(), strict=True):
        back = graphs.to_state_dict(g)
        assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="one graph"):
        graphs.to_state_dict(batch)


def test_rows_to_batch_and_back():

    nets = [nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
            for _ in range(4)]
    lay = graphs.trace(nets[0], torch.randn(2, 1, 4, 4))
    rows = flatten_state_dicts([n.state_dict() for n in nets], lay)
    ints = torch.stack([graphs.flatten_int_buffers(n, lay) for n in nets])
    fast = rows_to_batch(rows, lay, ints)
    slow = Batch.from_data_list([graphs.vector_to_graph(r, lay, i) for r, i in zip(rows, ints, strict=True)])
    for key in ("x", "edge_index", "edge_attr", "node_type", "node_pos", "edge_type", "edge_param", "batch", "ptr",
                "ints"):
        assert torch.equal(getattr(fast, key), getattr(slow, key)), key
    assert torch.equal(batch_to_rows(fast, lay), rows)
    for net, g in zip(nets, fast.to_data_list(), strict=True):
        assert isinstance(g, graphs.ParamGraph)
        back = graphs.to_state_dict(g)
        assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
