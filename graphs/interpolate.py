"""Loss and accuracy along the linear path between two networks, naive and aligned.

Also: recomputing normalization running statistics on data for an interpolated network (the averaged
running statistics of two networks do not describe the averaged network's activations; recomputing
them is the simplest form of REPAIR), and a small loader for the demo classification data
(``digits``, ``mnist1d``, or a ``.pt`` file holding ``{"x": tensor, "y": tensor}``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from graphs.align import interpolate_state_dicts

__all__ = ["ClassData", "barrier", "evaluate", "has_running_stats", "interpolation_path", "load_class_data",
           "plot_paths", "reset_norm_stats", "shape_inputs"]


@dataclass
class ClassData:
    """A classification data set: ``x_train [N, ...]`` float, ``y_train [N]`` int64, and a test split."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_class_data(spec: str, test_fraction: float = 0.2, seed: int = 0) -> ClassData:
    """``digits`` (scikit-learn 8x8 digits in [-1, 1], flat [N, 64]), ``mnist1d`` ([N, 40]) or a ``.pt`` file.

    A ``.pt`` file holds ``{"x": tensor, "y": tensor}`` (one split, used for both) or also ``x_test``/``y_test``.

    Raises:
        ValueError: An unknown name, a missing or malformed file, or a missing optional package.
    """
    if spec == "digits":
        try:  # optional dependency (the 'data' extra)
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise ValueError("--data digits needs scikit-learn: pip install scikit-learn") from exc
        d = load_digits()
        x, y = d.data.astype(np.float32) / 8.0 - 1.0, d.target.astype(np.int64)
        xt, yt = None, None
    elif spec == "mnist1d":
        try:  # optional dependency (the 'data' extra)
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as exc:
            raise ValueError("--data mnist1d needs the mnist1d package: pip install mnist1d") from exc
        state = np.random.get_state()  # make_dataset seeds numpy's global generator
        try:
            d = make_dataset(get_dataset_args())
        finally:
            np.random.set_state(state)
        scale = float(np.abs(d["x"]).max())
        x, y = (d["x"] / scale).astype(np.float32), d["y"].astype(np.int64)
        xt, yt = (d["x_test"] / scale).astype(np.float32), d["y_test"].astype(np.int64)
    else:
        return _load_file(spec)
    if xt is None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        k = int(round(test_fraction * len(y)))
        x, y, xt, yt = x[order[k:]], y[order[k:]], x[order[:k]], y[order[:k]]
    t = torch.from_numpy
    return ClassData(spec, t(np.ascontiguousarray(x)), t(y), t(np.ascontiguousarray(xt)), t(yt))


def _load_file(path: str) -> ClassData:
    if not path.endswith(".pt"):
        raise ValueError(f"--data {path!r}: use digits, mnist1d, or a .pt file holding {{'x': tensor, 'y': tensor}}")
    if not os.path.isfile(path):
        raise ValueError(f"--data {path}: no such file")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise ValueError(f"--data {path} cannot be read with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(d, Mapping) or not all(isinstance(d.get(k), torch.Tensor) for k in ("x", "y")):
        raise ValueError(f"--data {path} must hold a dict with tensors 'x' [N, ...] and 'y' [N] (class ids)")
    x, y = d["x"].float(), d["y"].long().view(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"--data {path}: 'x' has {x.shape[0]} rows but 'y' has {y.shape[0]}")
    xt, yt = d.get("x_test", x).float(), d.get("y_test", y).long().view(-1)
    return ClassData(os.path.basename(path), x, y, xt, yt)


def shape_inputs(x: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
    """Reshape samples ``x [N, ...]`` to the per-sample shape of ``example`` (e.g. [N, 64] -> [N, 1, 8, 8]).

    Raises:
        ValueError: When a sample does not have as many values as the example input.
    """
    per = tuple(example.shape[1:])
    need = int(np.prod(per)) if per else 1
    have = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
    if need != have:
        raise ValueError(f"the data's samples have {have} values ({tuple(x.shape[1:])}) but the model's example "
                         f"input has {need} per sample ({per}); give --example-input-shape N,{','.join(map(str, per))} "
                         "that fits the data, or a model for it")
    return x.reshape(x.shape[0], *per).to(example.dtype)


def has_running_stats(model: nn.Module) -> bool:
    """Whether ``model`` has a normalization layer with running statistics (BatchNorm, tracked InstanceNorm)."""
    return any(_tracks(m) for m in model.modules())


def _tracks(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats


@torch.no_grad()
def reset_norm_stats(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Recompute every running mean/variance of ``model`` on inputs ``x`` (exact averages over ``x``).

    The model is left in eval mode; only normalization layers run in training mode during the passes.
    """
    norms = [m for m in model.modules() if _tracks(m)]
    if not norms:
        return model
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    for i in range(0, x.shape[0], batch_size):
        model(x[i:i + batch_size])
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    return model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier's logits ``[N, C]``."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        out = model(x[i:i + batch_size])
        if out.dim() != 2 or out.shape[1] <= int(y.max()):
            raise ValueError(f"the model returns {tuple(out.shape)}; evaluation needs logits [N, classes] with "
                             f"at least {int(y.max()) + 1} classes")
        loss += float(nn.functional.cross_entropy(out.float(), y[i:i + batch_size], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return loss / x.shape[0], correct / x.shape[0]


def interpolation_path(model: nn.Module, a: Mapping, b: Mapping, data: ClassData, steps: int = 11,
                       reset_stats: bool = True) -> dict:
    """Test loss and accuracy of ``(1 - t) a + t b`` for ``steps`` values of ``t`` in [0, 1].

    Args:
        model: A module of the architecture (not modified).
        a: First state_dict.
        b: Second state_dict.
        data: Inputs already shaped for the model.
        steps: Number of points.
        reset_stats: Recompute normalization running statistics on the training inputs at every point.

    Returns:
        ``{"t", "loss", "acc"}`` lists, and the ``loss_barrier`` and ``acc_barrier`` (:func:`barrier`).
    """
    net = copy.deepcopy(model)
    ts = [float(t) for t in np.linspace(0.0, 1.0, steps)]
    losses, accs = [], []
    for t in ts:
        net.load_state_dict(interpolate_state_dicts(a, b, t))
        if reset_stats:
            reset_norm_stats(net, data.x_train)
        loss, acc = evaluate(net, data.x_test, data.y_test)
        losses.append(loss)
        accs.append(acc)
    return {"t": ts, "loss": losses, "acc": accs, "loss_barrier": barrier(ts, losses),
            "acc_barrier": barrier(ts, [-v for v in accs])}


def barrier(ts, values) -> float:
    """``max_t value(t) - ((1 - t) value(0) + t value(1))``: the bump above the endpoints' chord (>= 0)."""
    v0, v1 = values[0], values[-1]
    return max(0.0, max(v - ((1 - t) * v0 + t * v1) for t, v in zip(ts, values, strict=True)))


def plot_paths(paths: Mapping[str, dict], path: str, title: str = "") -> None:
    """Plot loss and accuracy against ``t`` for several named paths into a PNG file."""
    try:  # optional dependency (the 'data' extra)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("plots need matplotlib: pip install matplotlib") from exc
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, p in paths.items():
        ax_l.plot(p["t"], p["loss"], marker="o", ms=3, label=name)
        ax_a.plot(p["t"], p["acc"], marker="o", ms=3, label=name)
    ax_l.set(xlabel="t", ylabel="test loss")
    ax_a.set(xlabel="t", ylabel="test accuracy")
    ax_l.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
