"""The GHN's fused computation equals its definition, in float64, outputs and gradients.

Message passing: ``mean_{u->v} MLP([h_u, e_uv])`` per edge (against each distinct (source, type) message once
and a sparse mean). Decoding: ``F = C c * (1 + film(x)) + decode(x + c)``, ``x = LN(context + block + t +
axis)``, per axis (against the unit table with the code's linear terms precomputed and the fused projection).
"""

import pytest
import torch
from torch import nn
from torch_geometric.utils import scatter

import graphs
from metanets.hyper import GHN, ArchGraph, GHNConfig
from metanets.hyper.archgraph import MAX_NDIM
from metanets.hyper.ghn import _Messages, _Round, sinusoidal


def _per_edge_round(rnd, h, edge_index, edge_type):
    src, dst = edge_index
    e = rnd.type_emb(edge_type)
    msg = rnd.msg(torch.cat([h[src], e], dim=1))
    agg = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="sum")
    deg = torch.zeros(h.shape[0], dtype=h.dtype).index_add_(0, dst, torch.ones_like(dst, dtype=h.dtype))
    agg = agg / deg.clamp_min(1)[:, None]
    return h + rnd.upd(rnd.norm(torch.cat([h, agg], dim=1)))


def _randomized(module, std=0.3):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)  # no zero-initialized path left out of the comparison
    return module.double()


def test_round_equals_per_edge_mean_with_repeated_edges_and_isolated_nodes():
    torch.manual_seed(1)
    rnd = _randomized(_Round(8, 5))
    n = 12  # node 11 gets no messages; edge (0 -> 3, type 2) appears three times
    src = torch.tensor([0, 0, 0, 1, 2, 2, 4, 5, 5, 6, 7, 8, 9, 10, 3, 3])
    dst = torch.tensor([3, 3, 3, 3, 3, 0, 0, 1, 1, 2, 2, 4, 4, 5, 6, 6])
    typ = torch.tensor([2, 2, 2, 1, 0, 4, 4, 3, 0, 1, 1, 2, 2, 0, 3, 4])
    edge_index = torch.stack([src, dst])
    h1 = torch.randn(n, 8, dtype=torch.float64, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_(True)
    got = rnd(h1, _Messages(edge_index, typ, n, 5))
    want = _per_edge_round(rnd, h2, edge_index, typ)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(got)
    g_got = torch.autograd.grad((got * w).sum(), [h1, *rnd.parameters()])
    g_want = torch.autograd.grad((want * w).sum(), [h2, *rnd.parameters()])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert got[11].sub(h1[11]).abs().max() > 1e-3  # sensitivity: the update is not the identity


def _reference_factors(ghn, arch, p_i, ctx, code, t):
    """The per-axis definition: gather context and code, add block, tensor state and axis, normalize, decode."""
    p = arch.layout.params[p_i]
    m, d = len(p.shape), ghn.config.hidden
    ctx = torch.cat([ctx, ctx.new_zeros(1, d)])
    code = torch.cat([code, code.new_zeros(1, d)])
    out = []
    for j, ax in enumerate(arch.axes[p_i]):
        if ax.span is not None:
            c, k = ctx[ax.span[0]:ax.span[0] + ax.span[1]], code[ax.span[0]:ax.span[0] + ax.span[1]]
        elif ax.units.shape[1]:
            c, k = ctx[ax.units].sum(1), code[ax.units].sum(1)
        else:
            c, k = ctx.new_zeros(len(ax.units), d), code.new_zeros(len(ax.units), d)
        block = ax.block if ax.blocked else torch.zeros(1, dtype=torch.long)
        x = ghn.ctx_norm(c + ghn.block_proj(sinusoidal(block, d).double()) + t
                         + ghn.axis_emb.weight[(m - 1) * MAX_NDIM + j])
        f = ghn.code_lin(k) * (1.0 + ghn.film(x)) + ghn.decode(x + k)
        if ax.movable and m > 1:
            f = f - f.mean(0, keepdim=True)
        out.append(f)
    return out


class _Attn(nn.Module):  # concatenated (blocked) axes, product axes (heads x head_dim), 1-d and 2-d tensors
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.a, self.b = nn.Linear(8, 4), nn.Linear(8, 5)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(9, 3)

    def forward(self, x):
        h = self.inp(x)
        h = self.norm(h + self.attn(h, h, h, need_weights=False)[0])
        return self.out(torch.cat([self.a(h), self.b(h)], dim=-1)).mean(1)  # a concatenated input axis


@pytest.mark.parametrize("kind", ["conv", "attention"])
def test_factors_equal_the_per_axis_definition(kind):
    torch.manual_seed(2)
    if kind == "conv":
        net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, groups=2),
                            nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
        inputs = (torch.zeros(1, 3, 8, 8),)
    else:
        net, inputs = _Attn(), (torch.zeros(1, 4, 6),)
    ghn = _randomized(GHN(GHNConfig(hidden=16, layers=1, rank=4)))
    arch = ArchGraph.of(graphs.trace(net, inputs), ghn.config.hops)
    axes = [ax for per_param in arch.axes for ax in per_param]
    assert any(ax.blocked for ax in axes) == (kind == "attention")  # block codes per unit
    assert any(ax.span is None and ax.units.shape[1] > 1 for ax in axes)  # sums of table rows
    d, U = ghn.config.hidden, arch.unit_pos.shape[0]
    ctx = torch.randn(U, d, dtype=torch.float64, requires_grad=True)
    code = torch.randn(U, d, dtype=torch.float64, requires_grad=True)
    no_block = ghn.block_proj(sinusoidal(torch.zeros(1, dtype=torch.long), d).double())
    units, proj = ghn._unit_table(ctx, code)
    checked = 0
    for p_i, p in enumerate(arch.layout.params):
        if p.is_buffer or not p.shape:
            continue
        t = torch.randn(d, dtype=torch.float64)
        got = ghn._factors(arch, p_i, units, t, no_block, proj)
        want = _reference_factors(ghn, arch, p_i, ctx, code, t)
        assert len(got) == len(want) == len(p.shape)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        w = [torch.randn_like(a) for a in got]
        wrt = [ctx, code, *ghn.parameters()]
        g_got = torch.autograd.grad(sum((a * v).sum() for a, v in zip(got, w, strict=True)), wrt,
                                    allow_unused=True, retain_graph=True)
        g_want = torch.autograd.grad(sum((b * v).sum() for b, v in zip(want, w, strict=True)), wrt,
                                     allow_unused=True)
        for a, b in zip(g_got, g_want, strict=True):
            assert (a is None) == (b is None) or (a if a is not None else b).abs().max() == 0
            if a is not None and b is not None:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        checked += 1
    assert checked >= 4
    # sensitivity: the factors depend on the context
    f0 = ghn._factors(arch, 0, units, torch.zeros(d, dtype=torch.float64), no_block, proj)[0]
    units2, _ = ghn._unit_table(ctx + torch.randn_like(ctx), code)  # (a constant shift: LN removes it)
    f1 = ghn._factors(arch, 0, units2, torch.zeros(d, dtype=torch.float64), no_block, proj)[0]
    assert (f0 - f1).abs().max() > 1e-3


def test_out_writes_the_same_predictions_into_the_given_tensors():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 5))
    arch = ArchGraph.of(graphs.trace(net, (torch.zeros(1, 3, 8, 8),)), 4)
    ghn = _randomized(GHN(GHNConfig(hidden=16, layers=1, rank=4))).float()
    with torch.no_grad():
        want = ghn(arch)
        params = dict(net.named_parameters())
        buffers = {k: v for k, v in net.named_buffers() if k.endswith(("running_mean", "running_var"))}
        net[1].running_var.fill_(7.0)
        target = {**params, **buffers}
        got = ghn(arch, out=target)
    assert set(got) == set(want)
    for name, value in got.items():
        assert value is target[name]  # written in place, not replaced
        torch.testing.assert_close(value, want[name], rtol=0, atol=0)
    assert net[1].running_var.eq(1.0).all()
    assert (net[4].weight - want["4.weight"]).abs().max() == 0 and want["4.weight"].std() > 1e-3


def test_out_refuses_autograd_and_mismatched_tensors():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    arch = ArchGraph.of(graphs.trace(net, (torch.zeros(1, 4),)), 4)
    ghn = GHN(GHNConfig(hidden=16, layers=1, rank=4))
    with pytest.raises(ValueError, match="torch.no_grad"):
        ghn(arch, out=dict(net.named_parameters()))
    with torch.no_grad():
        with pytest.raises(ValueError, match="shape"):
            ghn(arch, out={"0.weight": torch.zeros(3, 5)})
        with pytest.raises(ValueError, match="no parameter"):
            ghn(arch, out={"missing.weight": torch.zeros(3, 4)})


def test_half_precision_messages_average_in_float32():
    edge_index = torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]])
    msgs = _Messages(edge_index, torch.tensor([0, 1, 0, 1]), 3, 2)
    g = torch.randn(len(msgs.src), 4)
    got = msgs.mean(g.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), msgs.mean(g.bfloat16().float()).bfloat16().float(), rtol=0, atol=0)


def test_an_archgraph_with_more_hops_than_the_ghn_is_refused():
    net = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(4, 4), nn.ReLU())])
    arch = ArchGraph.of(graphs.trace(net, (torch.zeros(1, 4),)), 6)
    with pytest.raises(ValueError, match="hops=2"):
        GHN(GHNConfig(hidden=16, layers=1, rank=4, hops=2))(arch)
