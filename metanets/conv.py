"""Message passing with node *and* edge updates on parameter graphs (GMN-style)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

__all__ = ["EdgeNodeConv", "mlp"]


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


class EdgeNodeConv(MessagePassing):
    r"""One GMN layer: edges update from their endpoints, nodes aggregate both directions.

    .. math::
        e'_{uv} &= e_{uv} + \phi_e([e_{uv}, h_u, h_v]) \\
        h'_v &= h_v + \phi_h\big([h_v,\ \textstyle\bigoplus_{u \to v} e'_{uv},\ \bigoplus_{v \to w} e'_{vw}]\big)

    Incoming and outgoing messages are aggregated separately (weights are directed: input neuron
    to output neuron). Everything is local or a permutation-invariant aggregation, so the layer is
    equivariant to any relabeling of nodes.

    Args:
        hidden: Feature width of nodes and edges.
        aggr: Aggregation (``"mean"``, ``"sum"``, ``"max"``).
        norm: LayerNorm inside the update MLPs.

    Shapes:
        input: ``h [N, hidden]``, ``edge_index [2, E]``, ``e [E, hidden]``.
        output: ``(h' [N, hidden], e' [E, hidden])``.
    """

    def __init__(self, hidden: int, aggr: str = "mean", norm: bool = True) -> None:
        super().__init__(aggr=aggr)
        self.hidden = hidden
        self.edge_mlp = mlp([3 * hidden, hidden, hidden], norm=norm)
        self.node_mlp = mlp([3 * hidden, hidden, hidden], norm=norm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize the update MLPs."""
        for m in (*self.edge_mlp, *self.node_mlp):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index
        e = e + self.edge_mlp(torch.cat([e, h[src], h[dst]], dim=-1))  # (E, hidden)
        incoming = self.propagate(edge_index, e=e, size=(h.shape[0], h.shape[0]))  # (N, hidden) at targets
        outgoing = scatter(e, src, dim=0, dim_size=h.shape[0], reduce=self.aggr)  # (N, hidden) at sources
        h = h + self.node_mlp(torch.cat([h, incoming, outgoing], dim=-1))
        return h, e

    def message(self, e: torch.Tensor) -> torch.Tensor:
        return e
