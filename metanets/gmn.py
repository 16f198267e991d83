"""GMN: a graph metanetwork over ParamGraphs, and its variants (PNA, relational transformer)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.conv import EdgeNodeConv, mlp
from metanets.encoders import EncoderConfig, GraphEncoder
from metanets.layers_extra import PNAEdgeConv, RelationalAttentionConv

__all__ = ["GMNConfig", "GMNBackbone"]

_LAYERS = {"gmn": EdgeNodeConv, "pna": PNAEdgeConv, "transformer": RelationalAttentionConv}


@dataclass
class GMNConfig:
    """Architecture of a graph metanetwork.

    Attributes:
        layer: ``"gmn"`` (edge+node updates, GMN), ``"pna"`` (PNA aggregation with edge
            modulation, Neural Graphs), ``"transformer"`` (relational attention).
        hidden: Width of node and edge embeddings.
        layers: Number of message-passing layers.
        width: Packed edge-vector width ``K`` of the input graphs.
        max_layers: Layer-identity embedding size (0: off; see :class:`EncoderConfig`).
        aggr: Aggregations of the ``gmn`` layer (comma-separated, concatenated).
        heads: Attention heads of the ``transformer`` layer.
        edge_depth: Layers of the ``gmn`` edge update (1: GatedGCN-style, 2: two-layer MLP).
        readout_stats: Predictors only, zoos of one architecture: concatenate StatNN's per-tensor weight
            statistics (invariant) to the pooled graph features before the head.
        readout: Predictors only. ``"group"``: mean and max pools per node type and per edge group
            (each parameter tensor when ``max_layers > 0``, else each edge type), see
            :class:`metanets.pooling.GroupPool`; ``"graph"`` (the default until it is measured on every
            benchmark): mean and max over all nodes and all edges (:class:`metanets.pooling.GraphPool`;
            checkpoints written before ``readout`` existed load with it).
        readout_norm: Predictors only: standardize each pooled feature over the graphs of a batch
            (:class:`metanets.pooling.PoolNorm`, a BatchNorm) before the head. Without it the head of a
            zoo whose graphs differ little (INRs near their random init) reads features that are the
            same in every graph up to a few percent and does not learn. Off by default until measured
            on every benchmark (checkpoints written before the option existed load without it).
        max_chunks: Size of the edge-chunk embedding (0: none; needed by graphs that split blocks wider
            than ``width`` into several edges, see :class:`EncoderConfig`).
        probe_dim: Probe features per node (0: none). With ``P > 0`` every batch needs ``probe [N, P]``
            from :class:`metanets.probes.ProbeFeatures` (predictors take it as ``Predictor(cfg, probe=...)``).
    """

    layer: str = "gmn"
    hidden: int = 64
    layers: int = 4
    width: int = 9
    max_layers: int = 0
    aggr: str = "mean,max"
    heads: int = 4
    edge_depth: int = 2
    readout_stats: bool = False
    readout: str = "graph"
    readout_norm: bool = False
    probe_dim: int = 0
    max_chunks: int = 0


class GMNBackbone(nn.Module):
    r"""Encoder plus a stack of equivariant layers.

    Args:
        cfg: :class:`GMNConfig`.

    Shapes:
        input: a PyG batch of ParamGraphs.
        output: ``(h [N, hidden], e [E, hidden])``, equivariant to node relabeling.
    """

    def __init__(self, cfg: GMNConfig) -> None:
        super().__init__()
        if cfg.layer not in _LAYERS:
            raise ValueError(f"GMNConfig.layer={cfg.layer!r}; choose one of {sorted(_LAYERS)}")
        self.cfg = cfg
        self.encoder = GraphEncoder(EncoderConfig(cfg.hidden, cfg.width, max_layers=cfg.max_layers,
                                                   probe_dim=cfg.probe_dim, max_chunks=cfg.max_chunks))
        if cfg.layer == "gmn":
            self.convs = nn.ModuleList(EdgeNodeConv(cfg.hidden, cfg.aggr, edge_depth=cfg.edge_depth)
                                       for _ in range(cfg.layers))
        elif cfg.layer == "pna":
            self.convs = nn.ModuleList(PNAEdgeConv(cfg.hidden) for _ in range(cfg.layers))
        else:
            self.convs = nn.ModuleList(RelationalAttentionConv(cfg.hidden, cfg.heads) for _ in range(cfg.layers))

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        h, e = self.encoder(batch)
        for conv in self.convs:
            h, e = conv(h, batch.edge_index, e)
        return h, e


def head(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    """The MLP head used on pooled features."""
    return mlp([in_dim, hidden, hidden, out_dim])
