"""Invariant readouts: pool node and edge embeddings of each graph into one vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

__all__ = ["GraphPool", "GroupPool", "PoolNorm"]


class GraphPool(nn.Module):
    r"""Concatenate mean and max pools of nodes and of edges per graph: invariant to relabeling.

    Shapes:
        input: ``h [N, d]``, ``e [E, d]``, ``node_batch [N]``, ``edge_batch [E]``, ``num_graphs``.
        output: ``[num_graphs, 4 d]``.
    """

    def forward(self, h: torch.Tensor, e: torch.Tensor, node_batch: torch.Tensor, edge_batch: torch.Tensor,
                num_graphs: int) -> torch.Tensor:
        parts = [scatter(h, node_batch, 0, dim_size=num_graphs, reduce="mean"),
                 scatter(h, node_batch, 0, dim_size=num_graphs, reduce="max"),
                 scatter(e, edge_batch, 0, dim_size=num_graphs, reduce="mean"),
                 scatter(e, edge_batch, 0, dim_size=num_graphs, reduce="max")]
        return torch.cat(parts, dim=-1)


class GroupPool(nn.Module):
    r"""Mean and max pools per group of nodes and per group of edges, concatenated: invariant to relabeling.

    .. math:: z = \big[\,\mathrm{mean}_{v \in V_g} h_v,\ \max_{v \in V_g} h_v\,\big]_{g < G_n}
        \oplus \big[\,\mathrm{mean}_{uv \in E_k} e_{uv},\ \max_{uv \in E_k} e_{uv}\,\big]_{k < G_e}

    Groups are labels that no neuron symmetry changes (node type; edge type or parameter tensor), so
    the readout stays invariant. Pooling a whole graph at once (:class:`GraphPool`) lets the largest
    group decide the pooled vector: in an MLP the hidden-to-hidden weights outnumber the output
    layer's 32 to 1, and the output neuron is one node in 70, so the few embeddings that carry the
    most graph-specific information move the pooled vector by a fraction of a percent. Pooled per
    group, each keeps its own slots. An empty group (a type absent from a graph) pools to 0.

    Args:
        node_groups: ``G_n``, the number of node labels (``len(NodeType)``).
        edge_groups: ``G_e``, the number of edge labels (``len(EDGE_TYPES)``, or the layout's parameters).

    Shapes:
        input: ``h [N, d]``, ``e [E, d]``, ``node_group [N]``, ``edge_group [E]`` (labels), ``node_batch [N]``,
            ``edge_batch [E]``, ``num_graphs``.
        output: ``[num_graphs, 2 (G_n + G_e) d]``.
    """

    def __init__(self, node_groups: int, edge_groups: int) -> None:
        super().__init__()
        self.node_groups, self.edge_groups = node_groups, edge_groups

    def forward(self, h: torch.Tensor, e: torch.Tensor, node_group: torch.Tensor, edge_group: torch.Tensor,
                node_batch: torch.Tensor, edge_batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        return torch.cat([_pool(h, node_batch * self.node_groups + node_group, num_graphs, self.node_groups),
                          _pool(e, edge_batch * self.edge_groups + edge_group, num_graphs, self.edge_groups)], dim=-1)


def _pool(x: torch.Tensor, index: torch.Tensor, num_graphs: int, groups: int) -> torch.Tensor:
    """Mean and max of ``x`` rows per (graph, group) ``index``: ``[num_graphs, 2 groups d]``."""
    n = num_graphs * groups
    parts = [scatter(x, index, 0, dim_size=n, reduce=r).view(num_graphs, groups * x.shape[-1]) for r in ("mean", "max")]
    return torch.cat(parts, dim=-1)


class PoolNorm(nn.BatchNorm1d):
    r"""Standardize pooled graph vectors over the graphs of a batch (a BatchNorm), for the head to read.

    .. math:: \hat z_{g} = \gamma \odot (z_g - \mu_B) / \sqrt{\sigma_B^2 + \epsilon} + \beta

    with the batch's per-feature mean and variance in training and their running averages in eval.
    Pooled features are invariant, so is :math:`\hat z`. Needed where graphs differ little: pooled
    over hundreds of nodes and edges, the embeddings of networks that stay near their random
    initialization (INRs) give vectors equal in every graph up to a few percent; the head's
    gradients are then dominated by the shared part and its loss stays at chance.

    A training batch of one graph has no spread to take; it is normalized with the running statistics.

    Shapes:
        input: ``[num_graphs, F]``; output: ``[num_graphs, F]``.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training and z.shape[0] < 2:
            return F.batch_norm(z, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(z)
