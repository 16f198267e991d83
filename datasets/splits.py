"""Deterministic train/val/test splits of a zoo, optionally keeping groups of models together.

A split is a pure function of ``(number of models, SplitSpec, group labels)``: the units (models, or
the distinct values of the ``group_by`` label, e.g. a training run whose checkpoints at several
epochs must not leak across splits) are shuffled by ``numpy.random.default_rng(seed)`` and cut at
the rounded cumulative fractions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_SPLIT", "SplitSpec", "make_splits"]


@dataclass(frozen=True)
class SplitSpec:
    """How to split a zoo.

    Attributes:
        names: Split names, e.g. ``("train", "val", "test")``.
        fractions: One fraction per name, positive, summing to 1.
        seed: Seed of the shuffle.
        group_by: A label column whose equal values stay in one split (``None``: split models).
    """

    names: tuple[str, ...] = ("train", "val", "test")
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0
    group_by: str | None = None

    def __post_init__(self) -> None:
        if len(self.names) != len(self.fractions) or not self.names:
            raise ValueError(f"give one fraction per split name: names {self.names}, fractions {self.fractions}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"split names must be distinct, got {self.names}")
        for name in self.names:
            if not name or "/" in name:
                raise ValueError(f"split name {name!r} must be non-empty and contain no '/'")
        if any(f <= 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {self.fractions} "
                             f"(sum {sum(self.fractions):.6g})")


DEFAULT_SPLIT = SplitSpec()
"""80/10/10 train/val/test by model, seed 0."""


def make_splits(num_models: int, spec: SplitSpec, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Split ``range(num_models)`` as ``spec`` says.

    Args:
        num_models: Number of models.
        spec: Names, fractions, seed and grouping.
        groups: ``[num_models]`` values of the ``spec.group_by`` label (required when it is set).

    Returns:
        ``{name: sorted int64 model indices}``; every model is in exactly one split.
    """
    if spec.group_by is not None:
        if groups is None or len(groups) != num_models:
            raise ValueError(f"splitting by {spec.group_by!r} needs its {num_models} label values")
        _, unit_of_model = np.unique(np.asarray(groups), return_inverse=True)
        num_units = int(unit_of_model.max()) + 1 if num_models else 0
    else:
        unit_of_model = np.arange(num_models)
        num_units = num_models
    order = np.random.default_rng(spec.seed).permutation(num_units)
    bounds = np.round(np.cumsum(spec.fractions) * num_units).astype(np.int64)
    bounds[-1] = num_units
    split_of_unit = np.empty(num_units, dtype=np.int64)
    start = 0
    for k, stop in enumerate(bounds):
        split_of_unit[order[start:stop]] = k
        start = stop
    split_of_model = split_of_unit[unit_of_model]
    return {name: np.flatnonzero(split_of_model == k).astype(np.int64) for k, name in enumerate(spec.names)}
