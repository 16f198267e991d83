"""Variant message-passing layers: PNA aggregation with edge modulation, and relational attention."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import scatter, softmax

from metanets.conv import EdgeUpdate, mlp
from metanets.scatter import scatter_aggregate

__all__ = ["PNAEdgeConv", "RelationalAttentionConv"]


class PNAEdgeConv(nn.Module):
    r"""Neural-Graph-style layer: PNA aggregation with degree scalers and FiLM edge modulation.

    Aggregators are mean, max, min and std; an edge update follows the node update.

    .. math::
        m_{uv} = \gamma(e_{uv}) \odot W h_u + \beta(e_{uv}), \quad
        h'_v = h_v + \phi\big([h_v, \textstyle\bigoplus_{a \in A} \bigoplus_{s \in S} s(d_v)\, a(\{m_{uv}\})]\big)

    Both directions are aggregated (messages along reversed edges use a separate projection).

    Shapes:
        input: ``h [N, d]``, ``edge_index [2, E]``, ``e [E, d]``; output: ``(h', e')``.
    """

    def __init__(self, hidden: int, avg_log_degree: float = 1.0, norm: bool = True) -> None:
        super().__init__()
        self.avg_log_degree = avg_log_degree
        self.msg = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(2)])
        self.film = nn.ModuleList([nn.Linear(hidden, 2 * hidden) for _ in range(2)])
        self.node_mlp = mlp([hidden + 2 * 12 * hidden, hidden, hidden], norm=norm)
        self.edge_net = EdgeUpdate(hidden, 1, norm)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = h.shape
        # both directions' FiLM and message projections as one matrix multiply each
        film = torch.nn.functional.linear(e, torch.cat([f.weight for f in self.film]),
                                          torch.cat([f.bias for f in self.film]))  # (E, 4d): g0, b0, g1, b1
        msg = torch.nn.functional.linear(h, torch.cat([m.weight for m in self.msg]),
                                         torch.cat([m.bias for m in self.msg]))  # (N, 2d)
        # unbind, not slices: its backward stacks the parts' gradients instead of zero-filling one per part
        films, msgs = film.view(-1, 4, d).unbind(1), msg.view(n, 2, d).unbind(1)
        parts = [h]
        for k, (src, dst) in enumerate((edge_index, edge_index.flip(0))):
            m = torch.addcmul(films[2 * k + 1], films[2 * k], msgs[k].index_select(0, src))  # (E, d)
            # mean, max, min in one autograd node (metanets.scatter: the same values as PyG's scatter)
            mean, mx, mn = scatter_aggregate(m, dst, n, ("mean", "max", "min"))[0]
            count = torch.bincount(dst, minlength=n).to(h.dtype).view(-1, 1)
            sq = m.new_zeros(n, d).index_add_(0, dst, m * m) / count.clamp(min=1)
            agg = torch.cat([mean, mx, mn, (sq - mean * mean).clamp(min=0).add(1e-6).sqrt()], dim=-1)  # (N, 4d)
            logd = torch.log1p(count)
            parts += [agg, agg * (logd / self.avg_log_degree), agg * (self.avg_log_degree / logd.clamp(min=1e-3))]
        h = h + self.node_mlp(torch.cat(parts, dim=-1))
        return h, self.edge_net(e, h, edge_index)


class RelationalAttentionConv(nn.Module):
    r"""Graph-transformer layer with relational attention: edge features bias keys and values.

    .. math::
        \alpha_{uv} = \mathrm{softmax}_u\big((W_q h_v)^\top (W_k h_u + W_{ek} e_{uv}) / \sqrt{d}\big),\quad
        h'_v = h_v + W_o \textstyle\sum_u \alpha_{uv} (W_v h_u + W_{ev} e_{uv})

    followed by a feed-forward block and an edge update; attention runs along edges in both
    directions, per head.

    Shapes:
        input: ``h [N, d]``, ``edge_index [2, E]``, ``e [E, d]``; output: ``(h', e')``.
    """

    def __init__(self, hidden: int, heads: int = 4, norm: bool = True) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.dh = heads, hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.ekv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ff = mlp([hidden, 2 * hidden, hidden])
        self.edge_net = EdgeUpdate(hidden, 1, norm)

    def _attend(self, x: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        n, hd, dh = x.shape[0], self.heads, self.dh
        q = self.q(x).view(n, hd, dh)[dst]  # (E, H, dh)
        k, v = self.kv(x).view(n, 2, hd, dh)[src].unbind(1)
        ek, ev = self.ekv(e).view(-1, 2, hd, dh).unbind(1)
        logits = (q * (k + ek)).sum(-1) / math.sqrt(dh)  # (E, H)
        alpha = softmax(logits, dst, num_nodes=n)
        return scatter(alpha[..., None] * (v + ev), dst, 0, dim_size=n, reduce="sum").reshape(n, hd * dh)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ln1(h)
        src, dst = edge_index
        att = torch.cat([self._attend(x, e, src, dst), self._attend(x, e, dst, src)], dim=-1)
        h = h + self.out(att)
        h = h + self.ff(self.ln2(h))
        return h, self.edge_net(e, h, edge_index)
