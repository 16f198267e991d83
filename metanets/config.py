"""The typed config every metanetwork is built from (stored in checkpoints as a plain dict)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from metanets.gmn import GMNConfig

__all__ = ["GRAPH_MODELS", "ModelConfig"]

GRAPH_MODELS = ("gmn", "pna", "transformer")
"""Graph metanetworks (message passing on the parameter graph); every other name is a baseline."""


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
        gmn = dict(d.get("gmn", {}))
        gmn.setdefault("readout", "graph")  # the readout of checkpoints written before these options existed
        gmn.setdefault("readout_norm", False)
        d["gmn"] = GMNConfig(**gmn)
        return cls(**d)
