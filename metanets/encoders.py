"""Input encoders: turn ParamGraph fields into node and edge embeddings without breaking symmetry.

Hidden neurons get only their type embedding (plus fixed coordinates such as the q/k/v block of
a packed projection), so relabeling hidden neurons relabels embeddings. Input/output neurons
carry their position; parameter nodes carry their own features and, optionally, their layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.param_graph import EDGE_TYPES, NodeType

__all__ = ["EncoderConfig", "GraphEncoder"]


@dataclass
class EncoderConfig:
    """Options of :class:`GraphEncoder`.

    Attributes:
        hidden: Embedding width.
        width: ``K``, the packed edge-vector width of the input graphs.
        max_positions: Positions of input/output/fixed neurons are embedded modulo this number.
        max_layers: Size of the layer (``edge_param``) embedding; 0 disables it. Layer identity is
            invariant under neuron permutations; it helps single-architecture zoos and should be
            off for zoos that mix architectures.
        probe_dim: Probe features per node (``batch.probe [N, probe_dim]``, see :mod:`metanets.probes`);
            0 disables them (and adds no weights, so older checkpoints load unchanged).
        max_chunks: Size of the embedding of ``edge_chunk`` (which ``K`` slots of a block wider than ``K``
            an edge holds; see :mod:`graphs.compile`), embedded modulo this number. 0: none (graphs whose
            blocks all fit one edge; a batch with split blocks is refused).
    """

    hidden: int = 64
    width: int = 9
    max_positions: int = 1024
    max_layers: int = 0
    probe_dim: int = 0
    max_chunks: int = 0


class GraphEncoder(nn.Module):
    r"""Embed nodes and edges of a batch of ParamGraphs.

    .. math::
        h_v = E_{type}(t_v) + E_{pos}(p_v)\,[p_v \ge 0] + W_x x_v\ (+ W_a a_v), \qquad
        e_{uv} = W_e\, a_{uv} + E(\tau_{uv}, \ell_{uv}) + E_{chunk}(c_{uv})

    Args:
        cfg: :class:`EncoderConfig`.

    Shapes:
        input: batch with ``x [N, K]``, ``node_type [N]``, ``node_pos [N]``, ``edge_attr [E, K]``,
            ``edge_type [E]``, ``edge_param [E]``, ``edge_chunk [E]``; with ``probe_dim > 0`` also
            ``probe [N, probe_dim]`` (the neurons' activations :math:`a_v` on probe inputs,
            :class:`metanets.probes.ProbeFeatures`).
        output: ``(h [N, hidden], e [E, hidden])``.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.node_type = nn.Embedding(len(NodeType), d)
        self.node_pos = nn.Embedding(cfg.max_positions, d)
        self.node_x = nn.Linear(cfg.width, d)
        self.edge_val = nn.Linear(cfg.width, d)  # per edge: keep it one layer; the convs add depth
        # one table for (edge type, layer): a single lookup per edge instead of two
        self.edge_embed = nn.Embedding(len(EDGE_TYPES) * max(1, cfg.max_layers), d)
        self.layer = nn.Embedding(cfg.max_layers, d) if cfg.max_layers > 0 else None
        self.node_probe = nn.Linear(cfg.probe_dim, d) if cfg.probe_dim > 0 else None
        self.chunk = nn.Embedding(cfg.max_chunks, d) if cfg.max_chunks > 0 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small position embeddings so early training is dominated by the weights themselves."""
        nn.init.normal_(self.node_pos.weight, std=0.1)
        if self.layer is not None:
            nn.init.normal_(self.layer.weight, std=0.1)
        if self.chunk is not None:
            nn.init.normal_(self.chunk.weight, std=0.1)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        pos = batch.node_pos
        has_pos = (pos >= 0) & (batch.node_type != int(NodeType.PARAM))
        h = self.node_type(batch.node_type) + self.node_x(_pad(batch.x, self.cfg.width))
        h = h + self.node_pos(pos.clamp(min=0) % self.cfg.max_positions) * has_pos[:, None]
        if self.layer is not None:  # parameter nodes know which tensor they hold
            is_param = batch.node_type == int(NodeType.PARAM)
            h = h + self.layer(pos.clamp(min=0) % self.cfg.max_layers) * is_param[:, None]
        if self.node_probe is not None:
            h = h + self.node_probe(_probe(batch, self.cfg.probe_dim).to(h.dtype))
        key = batch.edge_type
        if self.layer is not None:
            key = key * self.cfg.max_layers + batch.edge_param % self.cfg.max_layers
        e = torch.addmm(self.edge_embed(key), _pad(batch.edge_attr, self.cfg.width), self.edge_val.weight.t())
        chunk = getattr(batch, "edge_chunk", None)
        if self.chunk is not None and chunk is not None:
            e = e + self.chunk(chunk % self.cfg.max_chunks)
        elif chunk is not None and self.chunk is None and bool((chunk > 0).any()):
            raise ValueError("these graphs split blocks wider than their edge width into several edges "
                             "(edge_chunk > 0) but the model was built without a chunk embedding; build it with "
                             "GMNConfig(max_chunks=...) (graphs.compile_layout(layout).num_chunks)")
        return h, e + self.edge_val.bias


def _probe(batch: Batch, dim: int) -> torch.Tensor:
    """The batch's probe features, checked against the width the model was built for."""
    probe = getattr(batch, "probe", None)
    if probe is None:
        raise ValueError(f"this model was built with probe_dim={dim} but the batch has no probe features; run "
                         "the batch through metanets.probes.ProbeFeatures first (Predictor(cfg, probe=...))")
    if probe.shape != (batch.x.shape[0], dim):
        raise ValueError(f"probe features have shape {tuple(probe.shape)}, the model needs ({batch.x.shape[0]}, "
                         f"{dim}): build it with GMNConfig(probe_dim={probe.shape[-1]})")
    return probe


def _pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad (or refuse to truncate) packed vectors to the encoder width."""
    k = t.shape[-1]
    if k == width:
        return t
    if k > width:
        raise ValueError(f"graphs have edge width {k} but the model was built for {width}; "
                         f"build it with EncoderConfig(width={k}) (the largest kernel/position block)")
    return torch.nn.functional.pad(t, (0, width - k))
