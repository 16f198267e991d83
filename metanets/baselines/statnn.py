r"""StatNN (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from Weights").

Each parameter tensor :math:`T` of the layout (weights, biases, and any other float parameter or
buffer) is summarized by seven statistics,

.. math:: \phi(T) = [\,\mathrm{mean}(T),\ \mathrm{var}(T),\ q_0(T),\ q_{25}(T),\ q_{50}(T),\ q_{75}(T),\ q_{100}(T)\,]

(population variance, linear-interpolation quantiles), and the concatenation over tensors is fed
to an MLP (:class:`StatNN`) or to gradient-boosted trees (:class:`StatGBT`). A neuron permutation
only reorders the elements of each tensor, so the features, and both models, are invariant by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.layout import Layout
from metanets.baselines.common import batch_to_rows, check_task, layout_of, parse_options, split_params
from metanets.config import ModelConfig
from metanets.normalize import Normalizer

__all__ = ["STATISTICS", "StatGBT", "StatNN", "StatNNConfig", "statnn_feature_names", "statnn_features",
           "tensor_statistics"]

STATISTICS = ("mean", "var", "q0", "q25", "q50", "q75", "q100")


def tensor_statistics(t: torch.Tensor) -> torch.Tensor:
    """The seven :data:`STATISTICS` of each row of ``t [B, n]`` (differentiable): ``[B, 7]``.

    Quantiles interpolate linearly between order statistics (``numpy.quantile``'s default); they
    come from one sort, so unlike ``torch.quantile`` there is no input-size limit.
    """
    n = t.shape[1]
    srt = t.sort(dim=1).values  # [B, n]
    pos = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64) * (n - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    frac = (pos - lo).to(t.dtype).to(t.device)
    quant = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * frac  # [B, 5]
    return torch.cat([t.mean(1, keepdim=True), t.var(1, unbiased=False, keepdim=True), quant], dim=1)


def summarized(layout: Layout) -> list:
    """The parameters that get statistics (every non-empty float tensor)."""
    return [p for p in layout.params if p.numel > 0]


def statnn_features(batch: Batch, layout: Layout) -> torch.Tensor:
    """Per-tensor statistics of every network in ``batch``: ``[B, 7 * T]`` (``T`` non-empty tensors).

    Column ``7 * j + s`` is statistic ``STATISTICS[s]`` of the ``j``-th non-empty tensor of the
    layout (see :func:`statnn_feature_names`). Use on raw batches to fit :class:`StatGBT`.
    """
    rows = batch_to_rows(batch, layout)  # [B, P]
    return torch.cat([tensor_statistics(t.reshape(t.shape[0], -1))
                      for p, t in zip(layout.params, split_params(rows, layout), strict=True) if p.numel > 0], dim=1)


def statnn_feature_names(layout: Layout) -> list[str]:
    """Names of the columns of :func:`statnn_features`, e.g. ``"0.weight:q50"``."""
    return [f"{p.name}:{s}" for p in summarized(layout) for s in STATISTICS]


@dataclass
class StatNNConfig:
    """Options of :class:`StatNN` (``ModelConfig.baseline``).

    Attributes:
        hidden: Width of the MLP.
        layers: Hidden layers of the MLP.
        dropout: Dropout after each hidden layer.
    """

    hidden: int = 128
    layers: int = 2
    dropout: float = 0.0


class StatNN(nn.Module):
    r"""MLP on per-tensor weight statistics: :math:`y = \mathrm{MLP}([\phi(T_1), \ldots, \phi(T_m)])`.

    The statistics are taken of the normalized weights (each tensor standardized with its training
    mean/std, an affine map that keeps the statistics informative and well scaled).

    Args:
        cfg: ``cfg.baseline`` holds :class:`StatNNConfig` options; ``cfg.layout_json`` the architecture.

    Shapes:
        input: a batch of ParamGraphs of the layout; output: ``[num_graphs, out_dim]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_task(cfg, ("predict", "classify"))
        self.cfg = parse_options(StatNNConfig, cfg)
        self.layout = layout_of(cfg)
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        d, h = len(STATISTICS) * len(summarized(self.layout)), self.cfg.hidden
        layers: list[nn.Module] = []
        for i in range(self.cfg.layers):
            layers += [nn.Linear(d if i == 0 else h, h), nn.SiLU(), nn.Dropout(self.cfg.dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(h if self.cfg.layers else d, cfg.out_dim))

    def forward(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs, out_dim]`` from the statistics of the normalized weights."""
        return self.mlp(statnn_features(self.normalizer(batch), self.layout))


class StatGBT:
    """Gradient-boosted trees on :func:`statnn_features` (scikit-learn's HistGradientBoosting).

    This is *not* a torch model: it has no ``forward`` and no state_dict, and train.py does not
    train it. Compute features with ``statnn_features(batch, layout)`` (raw weights: trees do not
    need normalization) and call :meth:`fit` / :meth:`predict` on numpy arrays or tensors. In a
    process that also runs torch, the two OpenMP thread pools can stall each other on a busy
    machine; ``threadpoolctl.threadpool_limits(1)`` around the calls avoids that.

    Args:
        task: ``"predict"`` (one ``HistGradientBoostingRegressor`` per target column) or
            ``"classify"`` (one ``HistGradientBoostingClassifier``).
        **options: Passed to the scikit-learn estimator (e.g. ``max_iter``, ``learning_rate``).
    """

    def __init__(self, task: str = "predict", **options: Any) -> None:
        if task not in ("predict", "classify"):
            raise ValueError(f"StatGBT(task={task!r}): use 'predict' or 'classify'")
        self.task, self.options = task, options
        self.models: list = []

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> StatGBT:
        """Fit on features ``X [n, F]`` and targets ``y [n]``/``[n, T]`` (regression) or labels ``y [n]``."""
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        except ImportError as e:  # optional dependency
            raise ImportError("StatGBT needs scikit-learn: pip install 'weightgraph[data]'") from e
        X, y = _numpy(X), _numpy(y)
        if self.task == "classify":
            self.models = [HistGradientBoostingClassifier(**self.options).fit(X, y.reshape(-1).astype(np.int64))]
        else:
            y2 = y.reshape(len(y), -1)
            self.models = [HistGradientBoostingRegressor(**self.options).fit(X, y2[:, j]) for j in range(y2.shape[1])]
        return self

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predictions ``[n, T]`` (regression) or class labels ``[n]`` (classification)."""
        if not self.models:
            raise RuntimeError("StatGBT.predict() before fit(): call fit(X, y) first")
        X = _numpy(X)
        if self.task == "classify":
            return self.models[0].predict(X)
        return np.stack([m.predict(X) for m in self.models], axis=1)


def _numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
