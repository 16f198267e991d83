"""Message passing with node *and* edge updates on parameter graphs (GMN-style)."""

from __future__ import annotations

import torch
from torch import nn

from metanets.scatter import REDUCTIONS, gather_sum, scatter_aggregate

__all__ = ["EdgeNodeConv", "EdgeUpdate", "mlp"]


def mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU, norm: bool = False) -> nn.Sequential:
    """A plain MLP; LayerNorm after each hidden layer when ``norm``."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.LayerNorm(sizes[i + 1]))
            layers.append(act())
    return nn.Sequential(*layers)


class EdgeUpdate(nn.Module):
    r"""Edge update from the edge and its endpoints, with the first layer factored by input.

    .. math:: e' = e + \psi\big(W_e e + W_s h_u + W_t h_v\big)

    equals an MLP on the concatenation ``[e, h_u, h_v]``, but the node terms are computed once per
    node and gathered onto edges, which halves the per-edge work. With ``depth=1``, ``psi`` is
    LayerNorm + SiLU (a GatedGCN-style update); with ``depth=2`` a further linear layer follows.

    Shapes:
        input: ``e [E, d]``, ``h [N, d]``, ``edge_index [2, E]``; output: ``e' [E, d]``.
    """

    def __init__(self, hidden: int, depth: int = 1, norm: bool = True) -> None:
        super().__init__()
        self.lin_e = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.lin_dst = nn.Linear(hidden, hidden, bias=False)
        post: list[nn.Module] = [nn.LayerNorm(hidden)] if norm else []
        post.append(nn.SiLU())
        if depth > 1:
            post.append(nn.Linear(hidden, hidden))
        self.post = nn.Sequential(*post)

    def forward(self, e: torch.Tensor, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        w = self.lin_e.weight
        if torch.is_autocast_enabled(e.device.type) or not e.dtype == h.dtype == w.dtype:
            src, dst = edge_index  # mixed precision: addmm casts, as it always did
            nodes = self.lin_src(h).index_select(0, src) + self.lin_dst(h).index_select(0, dst)  # (E, d)
            return e + self.post(torch.addmm(nodes + self.lin_e.bias, e, w.t()))
        # Same sum, fewer passes over the edges: the bias rides on the per-node term, one gather writes
        # W_s h_u + W_t h_v + b_e, W_e e is added in place, and so is the residual.
        pre = gather_sum([self.lin_src(h) + self.lin_e.bias, self.lin_dst(h)], edge_index).addmm_(e, w.t())
        return self.post(pre).add_(e)


class EdgeNodeConv(nn.Module):
    r"""One GMN layer: edges update from their endpoints, nodes aggregate both directions.

    .. math::
        e'_{uv} &= e_{uv} + \psi(W_e e_{uv} + W_s h_u + W_t h_v) \quad \text{(see EdgeUpdate)} \\
        h'_v &= h_v + \phi_h\big([h_v,\ \textstyle\bigoplus_{u \to v} e'_{uv},\ \bigoplus_{v \to w} e'_{vw}]\big)

    where each :math:`\bigoplus` concatenates several aggregations (default mean and max: the mean
    alone cannot count or pick out extreme weights).

    Incoming and outgoing messages are aggregated separately (weights are directed: input neuron
    to output neuron). Everything is local or a permutation-invariant aggregation, so the layer is
    equivariant to any relabeling of nodes.

    Args:
        hidden: Feature width of nodes and edges.
        aggr: Aggregations, comma-separated (``"mean,max"``; any of mean, sum, max, min, std).
        norm: LayerNorm inside the update MLPs.
        edge_depth: Layers of the edge update (1: GatedGCN-style, 2: a two-layer MLP).

    Shapes:
        input: ``h [N, hidden]``, ``edge_index [2, E]``, ``e [E, hidden]``.
        output: ``(h' [N, hidden], e' [E, hidden])``.
    """

    def __init__(self, hidden: int, aggr: str = "mean,max", norm: bool = True, edge_depth: int = 1) -> None:
        reductions = [r.strip() for r in aggr.split(",")]
        if not reductions or any(r not in REDUCTIONS for r in reductions):
            raise ValueError(f"aggr={aggr!r}: use a comma-separated list of {', '.join(REDUCTIONS)}")
        super().__init__()
        self.reductions = tuple(reductions)
        self.hidden = hidden
        self.edge_net = EdgeUpdate(hidden, edge_depth, norm)
        self.node_mlp = mlp([(1 + 2 * len(self.reductions)) * hidden, hidden, hidden], norm=norm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize the update MLPs."""
        for m in (*self.edge_net.modules(), *self.node_mlp):
            if m is not self.edge_net and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = h.shape[0]
        e = self.edge_net(e, h, edge_index)  # (E, hidden)
        # R x (N, hidden) each: incoming edges at targets, outgoing edges at sources
        incoming, outgoing = scatter_aggregate(e, edge_index.flip(0), n, self.reductions)
        h = h + self.node_mlp(torch.cat([h, *incoming, *outgoing], dim=-1))
        return h, e
