"""The plots eval.py draws (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["accuracy_vs_width", "confusion", "edit_grid", "finetune_curves", "scatter"]


def scatter(pred: np.ndarray, true: np.ndarray, metrics: dict, path: str, title: str) -> None:
    """Predicted against true values (first target), with the identity line."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2), dpi=120)
    ax.scatter(true[:, 0], pred[:, 0], s=12, alpha=0.7)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{title}\n" + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), fontsize=9)
    _save(fig, path)


def confusion(pred: np.ndarray, true: np.ndarray, metrics: dict, path: str, title: str) -> None:
    """Confusion matrix of class scores ``pred [N, K]`` against labels ``true [N, 1]``."""
    k = pred.shape[1]
    cm = np.zeros((k, k), int)
    for t, p in zip(true[:, 0].astype(int), pred.argmax(1), strict=True):
        cm[t, p] += 1
    fig, ax = plt.subplots(figsize=(4.5, 4.2), dpi=120)
    ax.imshow(cm, cmap="Blues")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.3f}", fontsize=9)
    _save(fig, path)


def edit_grid(images: tuple[torch.Tensor, ...], path: str, title: str) -> None:
    """Rows: INR image, target (edited image), image drawn by the edited INR."""
    k = images[0].shape[0]
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.2), dpi=120, squeeze=False)
    for r, (name, imgs) in enumerate(zip(("INR", "target", "edited INR"), images, strict=True)):
        for c in range(k):
            axes[r, c].imshow(imgs[c].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def finetune_curves(table: dict, path: str) -> None:
    """Fine-tuning curves per split: from predicted parameters (solid) and from random init (dashed)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for k, (split, r) in enumerate(table.items()):
        color = f"C{k}"
        ax.plot(r["predicted"], color=color, marker="o", label=f"{split}: GHN")
        ax.plot(r["random"], color=color, ls="--", marker="x", label=f"{split}: random init")
    ax.set_xlabel("fine-tuning epochs")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    _save(fig, path)


def accuracy_vs_width(table: list[dict], path: str, title: str) -> None:
    """Test accuracy against width ratio; filled markers at trained widths, open ones at unseen widths."""
    fig, ax = plt.subplots(figsize=(5, 3.8), dpi=120)
    w = [r["width"] for r in table]
    a = [r["accuracy"] for r in table]
    ax.plot(w, a, color="C0", lw=1)
    for r in table:
        ax.plot(r["width"], r["accuracy"], "o", color="C0", mfc="C0" if r["trained_width"] else "white")
    ax.plot([], [], "o", color="C0", label="trained width")
    ax.plot([], [], "o", color="C0", mfc="white", label="unseen width")
    ax.set_xlabel("width ratio")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
