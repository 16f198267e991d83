"""metanets.scatter and the EdgeNodeConv built on it, against PyG references (float64, tight tolerances)."""

import pytest
import torch
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import MultiAggregation
from torch_geometric.utils import scatter as pyg_scatter

from metanets.conv import EdgeNodeConv, mlp
from metanets.scatter import gather_sum, scatter_aggregate, scatter_extreme

ATOL = 1e-12
ALL = ["mean", "sum", "max", "min", "std"]


def random_graph(n=30, e=150, seed=0, dtype=torch.float64, channels=5):
    """Random directed multigraph whose first 4 nodes have no in- and no out-edges, and a few more only one side."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, n - 3, (e,), generator=g)  # nodes n-3.. have in-edges only
    dst = torch.randint(7, n, (e,), generator=g)  # nodes 4..6 have out-edges only
    x = torch.randn(e, channels, generator=g, dtype=dtype)
    return torch.stack([src, dst]), x


def test_random_graph_has_empty_segments():
    ei, _ = random_graph()
    deg_in, deg_out = torch.bincount(ei[1], minlength=30), torch.bincount(ei[0], minlength=30)
    assert (deg_in[:7] == 0).all() and (deg_out[:4] == 0).all() and (deg_out[-3:] == 0).all()
    assert (deg_in[7:] > 0).sum() > 10 and (deg_out[4:-3] > 0).sum() > 10


def pyg_reference(x, index, n, reductions):
    """PyG's own MultiAggregation (what MessagePassing.propagate ran before), split per reduction."""
    aggr = MultiAggregation(list(reductions)) if len(reductions) > 1 else MultiAggregation([reductions[0]])
    return aggr(x, index, dim_size=n).split(x.shape[1], dim=-1)


@pytest.mark.parametrize("reductions", [["mean", "max"], ALL, ["max"], ["min", "sum"], ["std"], ["std", "mean"]])
def test_aggregate_matches_pyg_both_directions(reductions):
    n = 30
    ei, x = random_graph(n)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    new = scatter_aggregate(x1, ei.flip(0), n, reductions)  # incoming (by target), outgoing (by source)
    ref = [pyg_reference(x2, ei[1], n, reductions), pyg_reference(x2, ei[0], n, reductions)]
    assert len(new) == 2 and all(len(d) == len(reductions) for d in new)
    for got_dir, ref_dir in zip(new, ref, strict=True):
        for got, want in zip(got_dir, ref_dir, strict=True):
            assert got.shape == (n, 5)
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # empty segments are exactly 0 in every reduction
    for got in new[0]:
        assert (got[:7] == 0).all()
    for got in new[1]:
        assert (got[:4] == 0).all() and (got[-3:] == 0).all()
    weights = [torch.randn(n, 5, dtype=x.dtype, generator=torch.Generator().manual_seed(i)) for i in range(99)]
    loss_new = sum((w * t).sum() for w, t in zip(weights, [t for d in new for t in d], strict=False))
    loss_ref = sum((w * t).sum() for w, t in zip(weights, [t for d in ref for t in d], strict=False))
    (g_new,) = torch.autograd.grad(loss_new, x1)
    (g_ref,) = torch.autograd.grad(loss_ref, x2)
    assert g_new.abs().sum() > 0
    torch.testing.assert_close(g_new, g_ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_scatter_extreme_matches_torch(reduce):
    n = 30
    ei, x = random_graph(n, seed=3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = scatter_extreme(x1, ei[1], n, reduce)
    want = pyg_scatter(x2, ei[1], 0, n, reduce=reduce)
    torch.testing.assert_close(got, want, atol=0, rtol=0)  # a max is exact
    w = torch.randn(n, 5, dtype=x.dtype)
    (g1,) = torch.autograd.grad((got * w).sum(), x1)
    (g2,) = torch.autograd.grad((want * w).sum(), x2)
    torch.testing.assert_close(g1, g2, atol=ATOL, rtol=0)
    # exactly one row per non-empty (node, channel) gets its gradient
    nonempty = torch.bincount(ei[1], minlength=n) > 0
    assert int((g1 != 0).sum()) == int(nonempty.sum()) * 5


def test_float32_forward_is_bitwise_pyg():
    n = 300
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, n - 20, (5000,), generator=g)
    x = torch.randn(5000, 16, generator=g)
    for reduce in ("max", "min"):
        assert torch.equal(scatter_extreme(x.requires_grad_(), index, n, reduce),
                           pyg_scatter(x, index, 0, n, reduce=reduce))


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_ties_get_one_subgradient(reduce):
    """Exact ties: PyG splits the gradient evenly, we give all of it to the smallest tied row; same per-segment sum."""
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [3.0, 0.5], [-1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 2, 2])  # node 1: empty
    x1 = x.clone().requires_grad_()
    out = scatter_extreme(x1, index, 3, reduce)
    torch.testing.assert_close(out, pyg_scatter(x, index, 0, 3, reduce=reduce), atol=0, rtol=0)
    grad = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]], dtype=torch.float64)
    (g,) = torch.autograd.grad(out, x1, grad)
    if reduce == "max":  # node 0: col 0 tie rows 1, 2 -> row 1; col 1 tie rows 0, 1 -> row 0
        want = [[0, 20], [10, 0], [0, 0], [50, 60], [0, 0]]
    else:  # node 0: col 0 row 0, col 1 row 2 (unique)
        want = [[10, 0], [0, 0], [0, 20], [50, 60], [0, 0]]
    torch.testing.assert_close(g, torch.tensor(want, dtype=torch.float64), atol=0, rtol=0)


def test_gradcheck_aggregate():
    ei, x = random_graph(n=12, e=30, seed=5, channels=3)
    x = x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: scatter_extreme(t, ei[1], 12, "max"), (x,))
    assert torch.autograd.gradcheck(lambda t: scatter_extreme(t, ei[0], 12, "min"), (x,))

    def both(t):
        return tuple(o for d in scatter_aggregate(t, ei.flip(0), 12, ["mean", "sum", "max", "min"]) for o in d)

    assert torch.autograd.gradcheck(both, (x,))


def test_unused_outputs_and_no_grad():
    ei, x = random_graph(seed=7)
    x1 = x.clone().requires_grad_()
    (mean_in, max_in), (mean_out, max_out) = scatter_aggregate(x1, ei.flip(0), 30, ["mean", "max"])
    (g,) = torch.autograd.grad(max_out.sum(), x1)  # only one of four outputs used
    x2 = x.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(pyg_scatter(x2, ei[0], 0, 30, reduce="max").sum(), x2)
    torch.testing.assert_close(g, g_ref, atol=0, rtol=0)
    with torch.no_grad():  # no arg-extreme is computed, same values
        fast = scatter_aggregate(x1, ei.flip(0), 30, ["mean", "max"])
    for a, b in zip(fast[0] + fast[1], [mean_in, max_in, mean_out, max_out], strict=True):
        assert torch.equal(a, b)


def test_no_edges():
    x = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    index = torch.zeros(2, 0, dtype=torch.long)
    outs = scatter_aggregate(x, index, 5, ALL)
    for o in outs[0] + outs[1]:
        assert o.shape == (5, 4) and (o == 0).all()
    (g,) = torch.autograd.grad(sum(o.sum() for o in outs[0] + outs[1]), x)
    assert g.shape == (0, 4)


def test_bad_reduction():
    ei, x = random_graph()
    with pytest.raises(ValueError):
        scatter_aggregate(x, ei, 30, ["median"])
    with pytest.raises(ValueError):
        scatter_extreme(x, ei[0], 30, "mean")


def test_gather_sum():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(10, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(10, 4, dtype=torch.float64, generator=g, requires_grad=True)
    index = torch.randint(0, 10, (2, 40), generator=g)
    got = gather_sum([a, b], index)
    want = a[index[0]] + b[index[1]]
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    w = torch.randn(40, 4, dtype=torch.float64, generator=g)
    torch.testing.assert_close(torch.autograd.grad((got * w).sum(), (a, b)),
                               torch.autograd.grad((want * w).sum(), (a, b)), atol=ATOL, rtol=0)
    assert torch.autograd.gradcheck(lambda x, y: gather_sum([x, y], index), (a, b))


class RefEdgeUpdate(nn.Module):
    """The edge update as first written (per-edge sums, out of place)."""

    def __init__(self, hidden, depth, norm):
        super().__init__()
        self.lin_e = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.lin_dst = nn.Linear(hidden, hidden, bias=False)
        post = [nn.LayerNorm(hidden)] if norm else []
        post.append(nn.SiLU())
        if depth > 1:
            post.append(nn.Linear(hidden, hidden))
        self.post = nn.Sequential(*post)

    def forward(self, e, h, edge_index):
        src, dst = edge_index
        nodes = self.lin_src(h).index_select(0, src) + self.lin_dst(h).index_select(0, dst)
        pre = torch.addmm(nodes + self.lin_e.bias, e, self.lin_e.weight.t())
        return e + self.post(pre)


class RefEdgeNodeConv(MessagePassing):
    """The GMN layer as first written: PyG propagate (MultiAggregation) once per direction."""

    def __init__(self, hidden, aggr, norm, edge_depth):
        reductions = [r.strip() for r in aggr.split(",")]
        super().__init__(aggr=reductions if len(reductions) > 1 else reductions[0])
        self.edge_net = RefEdgeUpdate(hidden, edge_depth, norm)
        self.node_mlp = mlp([(1 + 2 * len(reductions)) * hidden, hidden, hidden], norm=norm)

    def forward(self, h, edge_index, e):
        n = h.shape[0]
        e = self.edge_net(e, h, edge_index)
        incoming = self.propagate(edge_index, e=e, size=(n, n))
        outgoing = self.propagate(edge_index.flip(0), e=e, size=(n, n))
        return h + self.node_mlp(torch.cat([h, incoming, outgoing], dim=-1)), e

    def message(self, e):
        return e


@pytest.mark.parametrize("aggr,edge_depth,norm", [
    ("mean,max", 1, True), ("mean,max", 2, True), ("mean", 2, True), ("sum,min", 1, False),
    ("mean,sum,max,min,std", 2, True), ("std", 1, True), ("max", 2, False),
])
def test_edge_node_conv_equals_reference(aggr, edge_depth, norm):
    hidden, n = 8, 30
    ei, _ = random_graph(n, e=150, seed=11)
    torch.manual_seed(0)
    new = EdgeNodeConv(hidden, aggr, norm=norm, edge_depth=edge_depth).double()
    ref = RefEdgeNodeConv(hidden, aggr, norm, edge_depth).double()
    assert list(new.state_dict()) == list(ref.state_dict())  # checkpoints load either way
    ref.load_state_dict(new.state_dict())
    g = torch.Generator().manual_seed(4)
    h = torch.randn(n, hidden, dtype=torch.float64, generator=g)
    e = torch.randn(ei.shape[1], hidden, dtype=torch.float64, generator=g)
    wh = torch.randn(n, hidden, dtype=torch.float64, generator=g)
    we = torch.randn(ei.shape[1], hidden, dtype=torch.float64, generator=g)
    results = []
    for m in (new, ref):
        hh, ee = h.clone().requires_grad_(), e.clone().requires_grad_()
        h_out, e_out = m(hh, ei, ee)
        loss = (wh * h_out).sum() + (we * e_out).sum() + h_out.square().sum()
        grads = torch.autograd.grad(loss, [hh, ee, *m.parameters()])
        results.append((h_out, e_out, *grads))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert results[0][2].abs().sum() > 0 and results[0][3].abs().sum() > 0


def test_edge_node_conv_float32_close_to_reference():
    hidden, n = 16, 30
    ei, _ = random_graph(n, e=150, seed=12)
    torch.manual_seed(0)
    new, ref = EdgeNodeConv(hidden), RefEdgeNodeConv(hidden, "mean,max", True, 1)
    ref.load_state_dict(new.state_dict())
    h, e = torch.randn(n, hidden), torch.randn(ei.shape[1], hidden)
    for got, want in zip(new(h, ei, e), ref(h, ei, e), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
