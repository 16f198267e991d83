"""The PNA layer's fused forward equals the plain one it replaced (PyG scatters), outputs and gradients."""

import torch
from torch_geometric.utils import degree, scatter

from metanets.layers_extra import PNAEdgeConv


def reference(layer: PNAEdgeConv, h, edge_index, e):
    """The layer as first written: one PyG scatter per aggregator, per-direction FiLM and messages."""
    n = h.shape[0]
    parts = [h]
    for d, (src, dst) in enumerate((edge_index, edge_index.flip(0))):
        gamma, beta = layer.film[d](e).chunk(2, dim=-1)
        m = gamma * layer.msg[d](h).index_select(0, src) + beta
        aggs = [scatter(m, dst, 0, dim_size=n, reduce=r) for r in ("mean", "max", "min")]
        sq = scatter(m * m, dst, 0, dim_size=n, reduce="mean")
        aggs.append((sq - aggs[0] ** 2).clamp(min=0).add(1e-6).sqrt())
        agg = torch.cat(aggs, dim=-1)
        logd = torch.log1p(degree(dst, n, dtype=h.dtype))[:, None]
        parts += [agg, agg * logd / layer.avg_log_degree, agg * layer.avg_log_degree / logd.clamp(min=1e-3)]
    h = h + layer.node_mlp(torch.cat(parts, dim=-1))
    return h, layer.edge_net(e, h, edge_index)


def _graph(n=40, e=150, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.stack([torch.randint(0, n - 5, (e,), generator=g), torch.randint(0, n - 5, (e,), generator=g)])
    # the last 5 nodes have no edges at all: empty segments in both directions
    h = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(e, d, generator=g, dtype=torch.float64, requires_grad=True)
    return h, edge_index, x


def test_fused_pna_layer_equals_the_reference():
    torch.manual_seed(0)
    layer = PNAEdgeConv(16, avg_log_degree=1.7).double()
    h, edge_index, e = _graph()
    out = layer(h, edge_index, e)
    ref = reference(layer, h, edge_index, e)
    for a, b in zip(out, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), float((a - b).abs().max())
    weights = torch.randn_like(out[0]), torch.randn_like(out[1])
    params = [h, e, *layer.parameters()]
    got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights, strict=True)), params)
    want = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights, strict=True)), params)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), float((a - b).abs().max())
    # sensitivity: the layer is not constant in its inputs
    assert (layer(h * 1.1, edge_index, e)[0] - out[0]).abs().max() > 1e-6
