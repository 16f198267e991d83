"""Task models (predict / classify / edit) built from one typed config, and rebuilt from checkpoint dicts.

``build_model(ModelConfig(...))`` returns an ``nn.Module`` whose ``forward(batch)`` takes a PyG
batch of ParamGraphs and returns ``[num_graphs, out_dim]`` (predict/classify, invariant) or a
batch with new weights (edit, equivariant). Every model normalizes its input with the statistics
it was trained with, so ``model_from_checkpoint(ckpt)(batch)`` works on raw graphs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.param_graph import EDGE_TYPES, NodeType
from metanets.baselines import build_baseline
from metanets.baselines.common import layout_of
from metanets.baselines.statnn import STATISTICS, statnn_features, summarized
from metanets.config import GRAPH_MODELS, ModelConfig
from metanets.gmn import GMNBackbone, head
from metanets.hyper import GHN, GHNConfig
from metanets.hyper.neumeta import NeuMeta, NeuMetaConfig
from metanets.normalize import Normalizer, slot_mask
from metanets.pooling import GraphPool, GroupPool, PoolNorm

__all__ = ["GRAPH_MODELS", "Editor", "ModelConfig", "Predictor", "TargetScale", "build_model", "model_from_checkpoint"]

class Predictor(nn.Module):
    r"""Graph metanetwork with an invariant readout: :math:`y = \rho(\mathrm{pool}(\mathrm{GMN}(G)))`.

    With ``cfg.gmn.readout_norm`` the pooled vector is standardized over the graphs of the batch
    (:class:`metanets.pooling.PoolNorm`) before the head reads it.

    With ``cfg.gmn.readout_stats`` (zoos of one architecture), the head reads
    :math:`[\mathrm{pool}(\mathrm{GMN}(G)),\ \mathrm{LN}(W s(G))]` where :math:`s` are StatNN's
    per-tensor statistics of the normalized weights (also invariant).

    With ``cfg.gmn.probe_dim = P > 0``, ``probe`` (a :class:`metanets.probes.ProbeFeatures` of ``P``
    probes) runs each input network on the probes first and the encoder adds its neurons' activations
    to their embeddings (probe features are computed from the raw, unnormalized weights).

    Shapes:
        input: batch of ParamGraphs; output: ``[num_graphs, out_dim]``.
    """

    def __init__(self, cfg: ModelConfig, probe: nn.Module | None = None) -> None:
        super().__init__()
        _check_probe(cfg, probe)
        self.probe = probe
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        self.backbone = GMNBackbone(cfg.gmn)
        d, layers = cfg.gmn.hidden, cfg.gmn.max_layers
        if cfg.gmn.readout == "group":  # edges grouped by tensor where layer ids are on, else by type
            self.pool = GroupPool(len(NodeType), layers if layers > 0 else len(EDGE_TYPES))
            pooled = 2 * (self.pool.node_groups + self.pool.edge_groups) * d
        elif cfg.gmn.readout == "graph":
            self.pool, pooled = GraphPool(), 4 * d
        else:
            raise ValueError(f"GMNConfig.readout={cfg.gmn.readout!r}; choose 'group' or 'graph'")
        self.stats = None
        if cfg.gmn.readout_stats:
            self.layout, self.stat_features = layout_of(cfg), statnn_features
            self.stats = nn.Sequential(nn.Linear(len(STATISTICS) * len(summarized(self.layout)), d), nn.LayerNorm(d))
        self.head = head(pooled + (d if self.stats is not None else 0), cfg.out_dim, d)
        self.pool_norm = PoolNorm(pooled) if cfg.gmn.readout_norm else None

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.probe is not None:
            batch = self.probe(batch)
        batch = self.normalizer(batch)
        h, e = self.backbone(batch)
        edge_batch = batch.batch[batch.edge_index[0]]
        if isinstance(self.pool, GroupPool):
            layers = self.backbone.cfg.max_layers
            edge_group = batch.edge_param % layers if layers > 0 else batch.edge_type
            pooled = self.pool(h, e, batch.node_type, edge_group, batch.batch, edge_batch, batch.num_graphs)
        else:
            pooled = self.pool(h, e, batch.batch, edge_batch, batch.num_graphs)
        if self.pool_norm is not None:
            pooled = self.pool_norm(pooled)
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


def _check_probe(cfg: ModelConfig, probe: nn.Module | None) -> None:
    """``probe`` is given exactly when ``cfg.gmn.probe_dim > 0``, with that many probes."""
    dim = cfg.gmn.probe_dim
    if dim > 0 and probe is None:
        raise ValueError(f"GMNConfig.probe_dim={dim} needs the probe module: build_model(cfg, probe="
                         "metanets.probes.ProbeFeatures(ProbeNet(program, layout), probes))")
    if probe is not None and getattr(probe, "num_probes", None) != dim:
        raise ValueError(f"the probe module has {getattr(probe, 'num_probes', None)} probes but "
                         f"GMNConfig.probe_dim={dim}; set probe_dim to the number of probes")


def build_model(cfg: ModelConfig, probe: nn.Module | None = None) -> nn.Module:
    """Build the model named by ``cfg.name`` for ``cfg.task`` (regression models predict in target units).

    ``probe``: the :class:`metanets.probes.ProbeFeatures` of a predictor built with ``cfg.gmn.probe_dim > 0``.
    """
    if cfg.name in GRAPH_MODELS:
        cfg.gmn.layer = cfg.name
        if cfg.task == "edit" and (probe is not None or cfg.gmn.probe_dim):
            raise ValueError("probe features are implemented for predict/classify models, not edit")
        model = Editor(cfg) if cfg.task == "edit" else Predictor(cfg, probe)
    else:
        if probe is not None or cfg.gmn.probe_dim:
            raise ValueError(f"model {cfg.name!r} takes no probe features; use a graph model "
                             f"({', '.join(GRAPH_MODELS)})")
        model = build_baseline(cfg)
    return TargetScale(model, cfg.out_dim) if cfg.task == "predict" else model


def model_from_checkpoint(ckpt: dict[str, Any], probe: nn.Module | None = None) -> nn.Module:
    """Rebuild a trained model from a checkpoint dict (eval mode); reading the file is the caller's job.

    A model trained with probe features needs ``probe``: a :class:`metanets.probes.ProbeFeatures` of
    the zoo's architectures (``ProbeFeatures(nets, probe_dim)``; its probes are loaded from ``ckpt``).

    ``ckpt`` needs ``model_config`` (a :class:`ModelConfig` dict, ``{"name": "ghn", "ghn": {...}}`` or
    ``{"name": "neumeta", "neumeta": {...}}``)
    and ``model`` (the state_dict). A metanetwork is ready for ``model(batch)``; a GHN for
    ``model(ArchGraph.of(layout))``.

    Raises:
        ValueError: The dict lacks those entries, or the state_dict does not fit the config.
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_config"), dict) or "model" not in ckpt:
        raise ValueError("not a weightgraph metanetwork checkpoint (it needs model_config and model entries)")
    mcfg = ckpt["model_config"]
    try:
        if mcfg.get("name") == "ghn":  # a graph hypernetwork (train.py --task ghn)
            model = GHN(GHNConfig(**mcfg["ghn"]))
        elif mcfg.get("name") == "neumeta":  # a weight manifold over widths (train.py --task neumeta)
            # checkpoints written before the fan-in factor and the cell filter existed were trained without them
            model = NeuMeta(NeuMetaConfig(**{"fan_in_scale": False, "cell_filter": False, **mcfg["neumeta"]}))
        else:
            model = build_model(ModelConfig.from_dict(mcfg), probe)
    except TypeError as exc:  # a key the config dataclasses do not have
        raise ValueError(f"the checkpoint's model_config does not fit this version of weightgraph ({exc}); "
                         "use the version that wrote it, or retrain") from exc
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"the checkpoint's weights do not fit its model_config ({str(exc).splitlines()[0]})") from exc
    return model.eval()
