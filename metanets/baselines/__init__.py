"""Baselines beside the graph metanetworks, one flag apart: NFN, StatNN (+ trees), a flat MLP, DeepSets.

``build_baseline(cfg)`` builds the model named by ``cfg.name``; :func:`metanets.build_model`
calls it for every name that is not a graph metanetwork.
"""

from __future__ import annotations

from torch import nn

from metanets.baselines.common import batch_to_rows, split_params
from metanets.baselines.deepsets import DeepSets, DeepSetsConfig
from metanets.baselines.flat_mlp import FlatMLP, FlatMLPConfig
from metanets.baselines.nfn import NFN, NFNConfig, NPLinear
from metanets.baselines.nfn_spec import ChainSpec
from metanets.baselines.statnn import StatGBT, StatNN, StatNNConfig, statnn_feature_names, statnn_features
from metanets.config import ModelConfig

__all__ = [
    "BASELINES", "ChainSpec", "DeepSets", "DeepSetsConfig", "FlatMLP", "FlatMLPConfig", "NFN", "NFNConfig",
    "NPLinear", "StatGBT", "StatNN", "StatNNConfig", "batch_to_rows", "build_baseline",
    "split_params", "statnn_feature_names", "statnn_features",
]

BASELINES: dict[str, type[nn.Module]] = {"nfn": NFN, "statnn": StatNN, "mlp": FlatMLP, "deepsets": DeepSets}


def build_baseline(cfg: ModelConfig) -> nn.Module:
    """Build the baseline named by ``cfg.name`` (a key of :data:`BASELINES`) for ``cfg.task``."""
    if cfg.name not in BASELINES:
        raise ValueError(f"unknown model {cfg.name!r}: choose a graph metanetwork ('gmn', 'pna', 'transformer') "
                         f"or a baseline {sorted(BASELINES)}")
    return BASELINES[cfg.name](cfg)
