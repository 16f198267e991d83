"""Task models (predict / classify / edit) built from one typed config, and checkpoint loading.

``build_model(ModelConfig(...))`` returns an ``nn.Module`` whose ``forward(batch)`` takes a PyG
batch of ParamGraphs and returns ``[num_graphs, out_dim]`` (predict/classify, invariant) or a
batch with new weights (edit, equivariant). Every model normalizes its input with the statistics
it was trained with, so ``load_checkpoint(path)(batch)`` works on raw graphs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.gmn import GMNBackbone, GMNConfig, head
from metanets.normalize import Normalizer, slot_mask
from metanets.pooling import GraphPool

__all__ = ["Editor", "ModelConfig", "Predictor", "TargetScale", "build_model", "load_checkpoint", "GRAPH_MODELS"]

GRAPH_MODELS = ("gmn", "pna", "transformer")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a metanetwork.

    Attributes:
        name: ``gmn``, ``pna``, ``transformer`` (graph metanetworks) or a baseline: ``nfn``,
            ``statnn``, ``mlp``, ``deepsets``.
        task: ``predict`` (regression), ``classify`` or ``edit`` (weights to weights).
        out_dim: Outputs per graph (targets, or classes).
        num_params: Parameters of the layout (flat-vector length), for layout-bound models.
        num_norm_keys: Normalizer slots (parameters of the layout, or edge types).
        normalize_by: ``"param"`` (single architecture) or ``"type"`` (mixed architectures).
        gmn: Backbone options for graph metanetworks.
        baseline: Options of a baseline model (see ``metanets.baselines``).
        layout_json: The zoo's layout (JSON), for models that need the architecture.
    """

    name: str = "gmn"
    task: str = "predict"
    out_dim: int = 1
    num_params: int = 0
    num_norm_keys: int = 16
    normalize_by: str = "type"
    gmn: GMNConfig = field(default_factory=GMNConfig)
    baseline: dict[str, Any] = field(default_factory=dict)
    layout_json: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["gmn"] = GMNConfig(**d.get("gmn", {}))
        return cls(**d)


class Predictor(nn.Module):
    r"""Graph metanetwork with an invariant readout: :math:`y = \rho(\mathrm{pool}(\mathrm{GMN}(G)))`.

    With ``cfg.gmn.readout_stats`` (zoos of one architecture), the head reads
    :math:`[\mathrm{pool}(\mathrm{GMN}(G)),\ \mathrm{LN}(W s(G))]` where :math:`s` are StatNN's
    per-tensor statistics of the normalized weights (also invariant).

    Shapes:
        input: batch of ParamGraphs; output: ``[num_graphs, out_dim]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        self.backbone = GMNBackbone(cfg.gmn)
        self.pool = GraphPool()
        d = cfg.gmn.hidden
        self.stats = None
        if cfg.gmn.readout_stats:
            from metanets.baselines.common import layout_of
            from metanets.baselines.statnn import STATISTICS, statnn_features, summarized

            self.layout, self.stat_features = layout_of(cfg), statnn_features
            self.stats = nn.Sequential(nn.Linear(len(STATISTICS) * len(summarized(self.layout)), d), nn.LayerNorm(d))
        self.head = head((5 if self.stats is not None else 4) * d, cfg.out_dim, d)

    def forward(self, batch: Batch) -> torch.Tensor:
        batch = self.normalizer(batch)
        h, e = self.backbone(batch)
        pooled = self.pool(h, e, batch.batch, batch.batch[batch.edge_index[0]], batch.num_graphs)
        if self.stats is not None:
            pooled = torch.cat([pooled, self.stats(self.stat_features(batch, self.layout))], dim=-1)
        return self.head(pooled)


class Editor(nn.Module):
    r"""Equivariant weight-to-weight map: new weights = input + per-edge/per-node corrections.

    .. math:: a'_{uv} = a_{uv} + \sigma_p\, \psi_e(e_{uv}), \qquad x'_v = x_v + \sigma\, \psi_h(h_v)

    (``\sigma_p``: the parameter's training std), so the output is a ParamGraph batch of the same
    structure; ``graphs.graph_to_vector`` turns each graph back into loadable weights.

    Shapes:
        input: batch of ParamGraphs; output: a batch with new ``edge_attr`` and ``x``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        self.backbone = GMNBackbone(cfg.gmn)
        d, k = cfg.gmn.hidden, cfg.gmn.width
        self.edge_out = head(d, k, d)
        self.node_out = head(d, k, d)
        for lin in (self.edge_out[-1], self.node_out[-1]):  # start at the identity map
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, batch: Batch) -> Batch:
        norm = self.normalizer(batch)
        h, e = self.backbone(norm)
        k = batch.edge_attr.shape[-1]
        std = self.normalizer.std[self.normalizer.keys(batch)][:, None]
        out = batch.clone()
        out.edge_attr = batch.edge_attr + (self.edge_out(e)[:, :k] * std) * slot_mask(batch, "edge")
        out.x = batch.x + self.node_out(h)[:, :k] * self.normalizer.node_std * slot_mask(batch, "x")
        return out


class TargetScale(nn.Module):
    r"""Report a regression model's outputs in the targets' units: :math:`y = \mu + \sigma f(G)`.

    The wrapped model learns standardized targets (train.py compares ``(y - mean) / std``);
    ``mean``/``std`` are buffers set from the training split, so a loaded checkpoint predicts in
    the original units.
    """

    def __init__(self, model: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.zeros(out_dim))
        self.register_buffer("std", torch.ones(out_dim))

    @property
    def normalizer(self) -> Normalizer:
        """The wrapped model's input normalizer."""
        return self.model.normalizer

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(batch) * self.std + self.mean


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model named by ``cfg.name`` for ``cfg.task`` (regression models predict in target units)."""
    if cfg.name in GRAPH_MODELS:
        cfg.gmn.layer = cfg.name
        model = Editor(cfg) if cfg.task == "edit" else Predictor(cfg)
    else:
        from metanets.baselines import build_baseline

        model = build_baseline(cfg)
    return TargetScale(model, cfg.out_dim) if cfg.task == "predict" else model


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from a checkpoint written by ``train.py`` (eval mode).

    A metanetwork is ready for ``model(batch)``; a GHN (``--task ghn``) for ``model(ArchGraph.of(layout))``.
    """
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a weightgraph metanetwork checkpoint (no model_config/model entries)")
    if ckpt["model_config"].get("name") == "ghn":  # a graph hypernetwork (train.py --task ghn)
        from metanets.hyper import GHN, GHNConfig

        model = GHN(GHNConfig(**ckpt["model_config"]["ghn"]))
    else:
        model = build_model(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()
