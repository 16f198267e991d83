"""What storing weights in a narrower float dtype than they were given in cost: measured, then reported once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from datasets.errors import ZooWarning

__all__ = ["RoundingReport"]


@dataclass
class RoundingReport:
    """Rounding of the models a writer stored in their layout's dtype (see :mod:`datasets.writer`).

    Attributes:
        models: Models whose stored weights differ from the given ones.
        max_abs: Largest absolute rounding error.
        max_rel: Largest rounding error relative to the given value.
        given: Dtype the weights came in (e.g. ``float64``).
        stored: Dtype they were stored in (e.g. ``float32``).
        layout: ``name#fingerprint`` of the first layout concerned.
    """

    models: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    given: str = ""
    stored: str = ""
    layout: str = ""

    def note(self, given: np.ndarray, stored: np.ndarray, layout: str) -> None:
        """Add the rounding of ``given [k, n]`` rows stored as ``stored`` (rows equal to what was given count not)."""
        with np.errstate(over="ignore", invalid="ignore"):
            err = np.abs(stored.astype(given.dtype) - given)
            err = np.where(np.isfinite(err), err, 0.0)
            rel = err / np.maximum(np.abs(given), np.finfo(stored.dtype).tiny)
        rounded = int((err > 0).any(axis=1).sum())
        if not rounded:  # the values fit the layout's dtype exactly: nothing was lost
            return
        self.models += rounded
        self.max_abs = max(self.max_abs, float(err.max()))
        self.max_rel = max(self.max_rel, float(rel.max()))
        self.given, self.stored = str(given.dtype), str(stored.dtype)
        self.layout = self.layout or layout

    def warn(self) -> None:
        """Issue one :class:`~datasets.errors.ZooWarning` saying what was rounded (nothing when nothing was)."""
        if self.models:
            warnings.warn(ZooWarning(
                f"{self.models} models had {self.given} weights and were stored rounded to the {self.stored} of "
                f"their layout {self.layout} (largest rounding error {self.max_abs:.3g}, relative "
                f"{self.max_rel:.3g}); to keep {self.given}, trace the architecture in {self.given} (e.g. a factory "
                "returning model.double())"), stacklevel=3)
