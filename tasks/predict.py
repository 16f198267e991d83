"""``--task predict``: regress a label of each network (test accuracy by default) from its weights.

The model learns standardized targets (mean and std of the training split) and reports predictions
in the label's units. ``best.pt`` has the lowest validation RMSE (rank correlation on a small
validation split is a noisy selector). Eval: RMSE, R^2, Kendall's tau, ...; a predicted-vs-true plot.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.metrics import regression_metrics
from tasks import plots
from tasks.base import EvalContext, Report
from tasks.metanet import MetanetConfig, MetanetTask, ZooEval

__all__ = ["PredictConfig", "PredictTask"]


@dataclass
class PredictConfig(MetanetConfig):
    """Options of ``--task predict`` (those of every metanetwork task)."""

    default_target = "test_acc"


class PredictTask(MetanetTask):
    """Regression of a per-network label."""

    name = "predict"
    Config = PredictConfig
    select, higher_is_better = "rmse", False

    def build_model(self) -> nn.Module:
        """The metanetwork with its target scaling set from the training labels."""
        model = super().build_model()
        y = self.train_ds._y[:, 0].numpy()
        model.mean.fill_(float(y.mean()))
        model.std.fill_(float(y.std()) or 1.0)
        self.model = model
        return model

    def loss(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, dict[str, float]]:
        """MSE in standardized units (always through ``module`` so that DDP syncs)."""
        out = (module(batch).float() - self.model.mean) / self.model.std
        y = (batch.y[:, :1] - self.model.mean) / self.model.std
        return torch.nn.functional.mse_loss(out, y), batch.num_graphs, {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Regression metrics on the validation split (label units)."""
        return regression_metrics(*self.predictions(model, self.val_loader))

    @classmethod
    def evaluate(cls, model: nn.Module, data: ZooEval, ctx: EvalContext) -> Report:
        """Regression metrics and a predicted-vs-true plot, or the predicted label of each user file."""
        task_cfg = ctx.task_cfg
        pred, true, index = cls.outputs(model, data, ctx)
        if data.paths is not None:
            return files_report(data.paths, pred, task_cfg, lambda p: f"{float(p[0]):.4f}", ctx.out)
        metrics = regression_metrics(pred, true)
        csv_path = write_csv(os.path.join(ctx.out, "predictions.csv"), ["zoo_index", task_cfg.target, "predicted"],
                             zip(index.tolist(), true[:, 0].tolist(), pred[:, 0].tolist(), strict=True))
        title = f"{task_cfg.model}: {task_cfg.target}"
        return zoo_report(cls.name, metrics, data, task_cfg,
                          lambda path: plots.scatter(pred, true, metrics, path, title), [csv_path])


def write_csv(path: str, header: list[str], rows) -> str:
    """Write ``rows`` under ``header`` to ``path``; returns the path."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def zoo_report(task: str, metrics: dict[str, float], data: ZooEval, task_cfg: MetanetConfig, plot,
               files: list[str]) -> Report:
    """The metric table of a zoo split."""
    return Report(title=f"{task_cfg.model} on {os.path.basename(data.data)} [{data.split}, task {task} "
                        f"{task_cfg.target}]",
                  header=["metric", "value"], rows=[[k, float(v)] for k, v in metrics.items()],
                  result={"data": os.path.abspath(data.data), "split": data.split, "model": task_cfg.model,
                          "task": task, "target": task_cfg.target, **metrics},
                  plot=plot, plot_name=f"{data.split}_{task}.png", files=files)


def files_report(paths: list[str], pred: np.ndarray, task_cfg: MetanetConfig, show, out: str) -> Report:
    """One row per scored checkpoint file (also written to ``out/predictions.csv``)."""
    result: dict[str, Any] = {"predictions": {p: row.tolist() for p, row in zip(paths, pred, strict=True)}}
    csv_path = write_csv(os.path.join(out, "predictions.csv"), ["checkpoint", task_cfg.target],
                         [[p, show(row)] for p, row in zip(paths, pred, strict=True)])
    return Report(title=f"{task_cfg.model}: {task_cfg.target} of {len(paths)} checkpoint(s)",
                  header=["checkpoint", task_cfg.target], rows=[[p, show(row)] for p, row in zip(paths, pred,
                                                                                                   strict=True)],
                  result=result, json_name="predictions.json", files=[csv_path])
