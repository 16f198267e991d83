"""Metrics of the metanetwork tasks (shared by train.py, eval.py and the benchmarks)."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["classification_metrics", "regression_metrics"]


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Kendall tau, R^2 and RMSE of predictions (1-D arrays; first column of 2-D ones)."""
    pred, true = np.asarray(pred, np.float64).reshape(len(pred), -1)[:, 0], np.asarray(true, np.float64).reshape(
        len(true), -1)[:, 0]
    tau = stats.kendalltau(pred, true).statistic if len(pred) > 1 and np.ptp(pred) > 0 else 0.0
    ss_res = float(np.sum((true - pred) ** 2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    return {"kendall_tau": float(tau), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
            "rmse": float(np.sqrt(ss_res / max(1, len(true))))}


def classification_metrics(logits: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Accuracy of arg-max predictions."""
    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": float((pred == np.asarray(true).reshape(-1)).mean()) if len(pred) else 0.0}
