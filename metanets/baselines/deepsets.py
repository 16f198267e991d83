r"""DeepSets over the elements of a parameter graph (Zaheer et al., 2017): every weight is a set element.

.. math::
    y = \rho\Big(\operatorname{pool}_{(u,v) \in E}\ \phi_e\big(W_a a_{uv} + E_\tau(\tau_{uv}) + E_\ell(\ell_{uv})\big),\
        \operatorname{pool}_{v \in V}\ \phi_n\big(W_x x_v + E_t(t_v)\big)\Big)

with :math:`a_{uv}` the (packed) weight of an edge, :math:`\tau` its edge type, :math:`\ell` its
parameter (layer) index, :math:`x_v`, :math:`t_v` node features and types, and ``pool`` a mean or sum
per graph. Nothing refers to a neuron's identity, so the model is invariant to every relabeling
of the graph; it also ignores which neurons a weight connects (the connectivity a GMN uses). It
needs no layout, so it runs on zoos that mix architectures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from graphs.param_graph import EDGE_TYPES, NodeType
from metanets.baselines.common import check_task, pad_width, parse_options
from metanets.config import ModelConfig
from metanets.conv import mlp
from metanets.normalize import Normalizer

__all__ = ["DeepSets", "DeepSetsConfig"]


@dataclass
class DeepSetsConfig:
    r"""Options of :class:`DeepSets` (``ModelConfig.baseline``).

    Attributes:
        hidden: Width of :math:`\phi` and :math:`\rho`.
        pool: ``"mean"`` or ``"sum"`` over the elements of each graph.
        layer_ids: Embed the parameter index :math:`\ell` of each edge (``ModelConfig.gmn.max_layers``
            slots, modulo); meaningful for single-architecture zoos.
    """

    hidden: int = 64
    pool: str = "mean"
    layer_ids: bool = True


class DeepSets(nn.Module):
    r"""Invariant DeepSets over edges (and nodes) of ParamGraphs.

    Args:
        cfg: ``cfg.baseline`` holds :class:`DeepSetsConfig` options; ``cfg.gmn.width`` is the packed
            feature width ``K`` and ``cfg.gmn.max_layers`` the layer-embedding size (0: off).

    Shapes:
        input: a batch of ParamGraphs (any layouts); output: ``[num_graphs, out_dim]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_task(cfg, ("predict", "classify"))
        self.cfg = parse_options(DeepSetsConfig, cfg)
        if self.cfg.pool not in ("mean", "sum"):
            raise ValueError(f"DeepSetsConfig.pool={self.cfg.pool!r}: use 'mean' or 'sum'")
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        d, self.width = self.cfg.hidden, cfg.gmn.width
        self.edge_val = nn.Linear(self.width, d)
        self.edge_type = nn.Embedding(len(EDGE_TYPES), d)
        n_layers = cfg.gmn.max_layers if self.cfg.layer_ids else 0
        self.layer = nn.Embedding(n_layers, d) if n_layers > 0 else None
        self.node_val = nn.Linear(self.width, d)
        self.node_type = nn.Embedding(len(NodeType), d)
        self.phi_e = mlp([d, d, d])
        self.phi_n = mlp([d, d, d])
        self.rho = mlp([2 * d, d, d, cfg.out_dim])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small type/layer embeddings, so that early training is driven by the weight values."""
        for emb in (self.edge_type, self.node_type, self.layer):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.1)

    def forward(self, batch: Batch) -> torch.Tensor:
        r"""Pooled element embeddings through :math:`\rho`: ``[num_graphs, out_dim]``."""
        norm = self.normalizer(batch)
        e = self.edge_val(pad_width(norm.edge_attr, self.width)) + self.edge_type(batch.edge_type)  # [E, d]
        if self.layer is not None:
            e = e + self.layer(batch.edge_param % self.layer.num_embeddings)
        h = self.node_val(pad_width(norm.x, self.width)) + self.node_type(batch.node_type)  # [N, d]
        b = batch.num_graphs
        pooled = [scatter(self.phi_e(e), batch.batch[batch.edge_index[0]], 0, dim_size=b, reduce=self.cfg.pool),
                  scatter(self.phi_n(h), batch.batch, 0, dim_size=b, reduce=self.cfg.pool)]
        return self.rho(torch.cat(pooled, dim=1))  # [B, out_dim]
