"""Edge width: blocks wider than the graph's edge width become parallel edges, so memory is linear in parameters."""

import pytest
import torch
from torch import nn

import eval as eval_script
import graphs
import train as train_script
from datasets import ZooWriter
from graphs.compile import _Builder, choose_width
from metanets import ModelConfig, build_model
from tests.equivariance import (
    assert_editor_equivariant,
    assert_exact_round_trip,
    assert_graph_equivariant,
    assert_model_invariant,
    assert_sound,
    graph_batch,
)


def test_choose_width_by_hand():
    # bytes per edge: 40 + 13 per slot
    # 1,000 scalar edges and 10 blocks of 256: K=1 costs 1000*53 + 10*256*53 = 188,680; K=256 costs
    # 1010 * 3368 = 3,401,680 (18x)
    assert choose_width({1: 1000, 256: 10}) == 1
    # 3x3 kernels dominate: K=9 costs 150 * 157 = 23,550, K=1 costs 50*53 + 100*9*53 = 50,350
    assert choose_width({9: 100, 1: 50}) == 9
    # K=4 is cheapest (200 * 92 = 18,400 against 100*53 + 100*4*53 = 26,500)
    assert choose_width({1: 100, 4: 100}) == 4
    # ResNet-50's blocks: K=9 costs 1.8x K=1, more than the 1.5x slack; K=49 far more
    resnet50 = {1: 14_283_496, 9: 1_257_472, 49: 192}
    assert choose_width(resnet50) == 1
    assert choose_width(resnet50, slack=2.0) == 9
    assert choose_width({}) == 1


def patch_net() -> nn.Module:
    """A 4x4 patch stem (16 values per edge) under 1x1 convs and linears (1 value per edge)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.Conv2d(8, 32, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 5)).double()


@pytest.fixture(scope="module")
def patch():
    model = patch_net()
    inputs = (torch.randn(2, 3, 8, 8, dtype=torch.float64),)
    return model, inputs, graphs.trace(model, inputs)


def test_wide_block_becomes_parallel_edges(patch):
    model, _inputs, layout = patch
    c = graphs.compile_layout(layout)
    # blocks {16: 3 * 8 stem edges, 1: 8*32 + 32*64 + 64*5 weight edges + 8 + 32 + 64 + 5 bias edges}
    assert c.width == 1 and c.num_chunks == 16
    stem = c.edge_param == 0
    assert int(stem.sum()) == 3 * 8 * 16  # every (input channel, output channel) pair: 16 edges, one per offset
    pairs = c.edge_index[:, stem].T.tolist()
    assert len(set(map(tuple, pairs))) == 3 * 8
    assert sorted(c.edge_chunk[stem].tolist()) == sorted(list(range(16)) * 24)
    g = graphs.to_graph(model, layout)
    # no padding at all: every edge slot holds a parameter, so the graph holds each weight once
    assert bool(g.edge_mask.all()) and g.edge_attr.numel() == layout.num_params
    # edge (i, o, chunk c) holds kernel offset c of W[o, i]: the pairs' values in chunk order are the kernels
    kernels = {}
    for e in torch.nonzero(stem).reshape(-1).tolist():
        pair = (int(c.edge_index[0, e]), int(c.edge_index[1, e]))
        kernels.setdefault(pair, [0.0] * 16)[int(c.edge_chunk[e])] = float(g.edge_attr[e, 0])
    want = sorted(tuple(k) for k in model[0].weight.detach().reshape(24, 16).tolist())
    assert sorted(tuple(k) for k in kernels.values()) == want


def test_parallel_edges_round_trip_and_permute(patch):
    model, inputs, layout = patch
    assert_exact_round_trip(model, layout)
    assert_sound(model, layout, inputs, None)
    assert_graph_equivariant(model, layout)


def test_node_features_wider_than_the_edge_width():
    """A parameter with no neuron axis (a 4x4 position bias shared by all channels) takes one parameter node
    per K slots."""

    class Gain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 1)
            self.gain = nn.Parameter(torch.randn(1, 1, 4, 4))
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(16, 3))

        def forward(self, x):
            return self.body(self.stem(x) + self.gain)

    torch.manual_seed(0)
    model = Gain().double()
    inputs = (torch.randn(2, 3, 4, 4, dtype=torch.float64),)
    layout = graphs.trace(model, inputs)
    assert_sound(model, layout, inputs, None)
    c = graphs.compile_layout(layout)
    assert c.width == 1
    index = [p.name for p in layout.params].index("gain")
    gain_nodes = (c.node_type == int(graphs.NodeType.PARAM)) & (c.node_pos == index)
    assert int(gain_nodes.sum()) == 16
    assert_exact_round_trip(model, layout)
    g = graphs.to_graph(model, layout)
    assert sorted(g.x[gain_nodes, 0].tolist()) == sorted(model.gain.detach().reshape(-1).tolist())


def test_fast_path_matches_general_path(patch):
    _model, _inputs, layout = patch
    a, b = graphs.compile_layout(layout), _Builder(layout, fast=False).build()
    for name in ("edge_index", "edge_chunk", "edge_gather", "node_gather", "inverse"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _zoo(layout, n=3):
    vecs = []
    for i in range(n):
        net = patch_net()
        torch.manual_seed(100 + i)
        for p in net.parameters():
            nn.init.normal_(p, std=0.5)
        vecs.append(graphs.flatten_state_dict(net, layout))
    return vecs


def _model(layout, name="gmn", task="predict", chunks=16):
    cfg = ModelConfig(name=name, task=task, out_dim=2, num_norm_keys=len(layout.params), normalize_by="param")
    cfg.gmn.hidden, cfg.gmn.layers, cfg.gmn.width, cfg.gmn.max_chunks = 16, 2, 1, chunks
    torch.manual_seed(0)
    model = build_model(cfg)
    for p in model.parameters():  # break the identity-init of edit heads so the test is not trivial
        if p.dim() and p.abs().sum() == 0:
            nn.init.normal_(p, std=0.1)
    return model


@pytest.mark.parametrize("name", ["gmn", "pna", "transformer"])
def test_metanets_on_parallel_edges_are_invariant_and_sensitive(patch, name):
    _model_, _inputs, layout = patch
    vecs = _zoo(layout)
    model = _model(layout, name)
    assert_model_invariant(model, layout, vecs)
    # the chunk embedding tells kernel offsets apart: moving the stem's values between offsets is not a
    # symmetry, and the prediction changes
    rows = torch.stack(vecs).double()
    moved = rows.clone()
    stem = layout.params[0]
    moved[:, stem.offset:stem.offset + stem.numel] = rows[:, stem.offset:stem.offset + stem.numel].reshape(
        -1, 8, 3, 16).flip(-1).reshape(-1, stem.numel)
    with torch.no_grad():
        diff = (model(graph_batch(moved, layout)) - model(graph_batch(rows, layout))).abs().max()
    assert diff > 1e-6


def test_editor_on_parallel_edges_is_equivariant(patch):
    _model_, _inputs, layout = patch
    out = assert_editor_equivariant(_model(layout, "gmn", "edit"), layout, _zoo(layout))
    assert out[0].shape == (layout.num_params,)


def test_model_without_chunk_embedding_refuses_parallel_edges(patch):
    _model_, _inputs, layout = patch
    model = _model(layout, chunks=0).double()
    with pytest.raises(ValueError, match="max_chunks"):
        model(graph_batch(_zoo(layout, 2), layout))


def test_train_and_eval_on_a_zoo_with_parallel_edges(tmp_path):
    """train.py builds the chunk embedding for such a zoo by itself, and eval.py scores with it."""
    path = tmp_path / "patch.h5"
    layout32 = graphs.trace(patch_net().float(), (torch.randn(2, 3, 8, 8),))
    with ZooWriter(path) as w:
        for i in range(24):
            net = patch_net().float()
            torch.manual_seed(200 + i)
            for p in net.parameters():
                nn.init.normal_(p, std=0.1 + 0.02 * i)
            w.add(net, layout32, labels={"spread": i / 24})
    out = str(tmp_path / "run")
    summary = train_script.main(["--data", str(path), "--target", "spread", "--epochs", "1", "--out", out,
                                 "--hidden", "16", "--layers", "2", "--quiet", "--threads", "1"])
    assert summary["steps"] > 0
    ckpt = torch.load(f"{out}/best.pt", weights_only=True)
    assert ckpt["model_config"]["gmn"]["max_chunks"] == 16 and ckpt["model_config"]["gmn"]["width"] == 1
    assert "kendall_tau" in eval_script.main([f"{out}/best.pt"])
