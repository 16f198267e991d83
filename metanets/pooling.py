"""Invariant readouts: pool node and edge embeddings of each graph into one vector."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

__all__ = ["GraphPool"]


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
