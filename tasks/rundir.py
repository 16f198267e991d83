"""A run's output folder: the overwrite/resume policy, the config written back, and the epoch log.

One policy for an existing run: ``train.py`` refuses a folder that holds a run unless ``--resume``
(continue from ``last.pt``) or ``--overwrite`` (remove that run's files first, so no stale
``metrics.json`` or plot stays beside new checkpoints). Every run writes ``config.yaml`` (loads back
with ``--config``), ``log.csv`` (loss and validation metrics per epoch), ``curves.png`` at the end,
and TensorBoard events under ``tensorboard/`` when the ``tensorboard`` package is installed.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import shutil
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
import yaml  # noqa: E402

__all__ = ["RUN_CONTROL", "RunLog", "prepare_out", "resume_point"]

RUN_FILES = ("best.pt", "last.pt", "train_summary.json", "config.yaml", "log.csv", "curves.png", "metrics.json",
             "predictions.csv", "predictions.json", "ghn_metrics.json", "ghn_finetune.png", "ghn_predicted.json",
             "*_predict.png", "*_classify.png", "*_edit.png", "edited", "tensorboard", "*.pt.tmp-*")
"""What a run (and eval.py beside it) writes into its folder."""

RUN_CONTROL = ("config", "resume", "overwrite", "quiet", "device", "threads", "workers", "epochs", "max_steps")
"""Options that may differ when a run is resumed (they do not change what is being trained)."""


def prepare_out(out: str, resume: bool, overwrite: bool, config: dict[str, Any]) -> None:
    """Apply the policy for an existing run in ``out``; create it and write ``config.yaml``.

    Raises:
        ValueError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set, or
            ``resume`` is set and there is nothing to resume.
    """
    last = os.path.join(out, "last.pt")
    held = [f for f in ("last.pt", "best.pt") if os.path.exists(os.path.join(out, f))]
    if resume and not os.path.isfile(last):
        raise ValueError(f"--resume: {out} holds no last.pt to resume from; drop --resume to start a new run")
    if held and not (resume or overwrite):
        raise ValueError(f"{out} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                         "--overwrite to replace it, or another --out")
    for path in glob.glob(os.path.join(out, "*.pt.tmp-*")):  # left by a save that was killed
        os.remove(path)
    if overwrite and not resume:
        for pattern in RUN_FILES:
            for path in glob.glob(os.path.join(out, pattern)):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump({k: v for k, v in config.items() if k not in ("config", "resume", "overwrite")}, f,
                       sort_keys=False)


def resume_point(ckpt: dict[str, Any], config: dict[str, Any]) -> tuple[int, int, list, float]:
    """``(epochs done, steps done, history, best selection score)`` of a ``last.pt`` to resume.

    Raises:
        ValueError: The stored run was trained with other options (besides :data:`RUN_CONTROL`).
    """
    stored = ckpt["train_config"]
    differ = sorted(k for k, v in config.items() if k not in RUN_CONTROL and k in stored and stored[k] != v)
    if differ:
        k = differ[0]
        raise ValueError(f"--resume: the run was trained with {k}={stored[k]!r}, not {config[k]!r} (and "
                         f"{len(differ) - 1} more differences); resume with the same options "
                         "(--config OUT/config.yaml) or start a new --out")
    return int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt.get("history", [])), float(ckpt.get("best", -math.inf))


class RunLog:
    """Per-epoch values to ``log.csv`` (always), TensorBoard (when installed) and ``curves.png`` (at the end)."""

    def __init__(self, out: str, enabled: bool = True) -> None:
        self.out, self.enabled, self.rows = out, enabled, []
        self.tb = None
        if enabled:
            try:  # optional dependency: TensorBoard (pip install tensorboard)
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(out, "tensorboard"))
            except ImportError:
                self.tb = None

    def epoch(self, row: dict[str, float]) -> None:
        """Record one epoch (``epoch``, ``loss`` and the validation metrics)."""
        if not self.enabled:
            return
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(os.path.join(self.out, "log.csv"), "w", newline="") as f:  # rewritten: columns may grow
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.tb.add_scalar(k if k == "loss" else f"val/{k}", v, int(row["epoch"]))
            self.tb.flush()

    def close(self) -> list[str]:
        """Draw ``curves.png``; returns the paths written."""
        if not self.enabled or not self.rows:
            return []
        keys = [k for k in self.rows[-1] if k != "epoch"]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), dpi=110, squeeze=False)
        epochs = [r["epoch"] for r in self.rows]
        for ax, k in zip(axes[0], keys, strict=True):
            ax.plot(epochs, [r.get(k, math.nan) for r in self.rows], marker=".")
            ax.set_title(k if k == "loss" else f"val {k}", fontsize=9)
            ax.set_xlabel("epoch")
        fig.tight_layout()
        path = os.path.join(self.out, "curves.png")
        fig.savefig(path)
        plt.close(fig)
        if self.tb is not None:
            self.tb.close()
        return [os.path.join(self.out, "log.csv"), path]
