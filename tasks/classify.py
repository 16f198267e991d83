"""``--task classify``: classify each network (e.g. the class an INR draws) from its weights.

Cross-entropy on the label column (``class`` by default); ``best.pt`` has the highest validation
accuracy. Eval: accuracy (and more); a confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.metrics import classification_metrics
from tasks import plots
from tasks.base import EvalContext, Report
from tasks.metanet import MetanetConfig, MetanetTask, ZooEval
from tasks.predict import files_report, zoo_report

__all__ = ["ClassifyConfig", "ClassifyTask"]


@dataclass
class ClassifyConfig(MetanetConfig):
    """Options of ``--task classify`` (those of every metanetwork task)."""

    default_target = "class"


class ClassifyTask(MetanetTask):
    """Classification of networks."""

    name = "classify"
    Config = ClassifyConfig
    select, higher_is_better = "accuracy", True

    def out_dim(self) -> int:
        """Classes: one more than the largest label of the train and validation splits."""
        return int(max(self.train_ds._y[:, 0].max(), self.val_ds._y[:, 0].max())) + 1

    def loss(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, dict[str, float]]:
        """Cross-entropy of the class scores."""
        return torch.nn.functional.cross_entropy(module(batch).float(), batch.y[:, 0].long()), batch.num_graphs, {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Classification metrics on the validation split."""
        return classification_metrics(*self.predictions(model, self.val_loader))

    @classmethod
    def evaluate(cls, model: nn.Module, data: ZooEval, ctx: EvalContext) -> Report:
        """Classification metrics and a confusion matrix, or the predicted class of each user file."""
        task_cfg = ctx.task_cfg
        pred, true = cls.outputs(model, data, ctx)
        if data.paths is not None:
            return files_report(data.paths, pred, task_cfg, lambda p: f"class {int(p.argmax())}")
        metrics = classification_metrics(pred, true)
        title = f"{task_cfg.model}: {task_cfg.target}"
        return zoo_report(cls.name, metrics, data, task_cfg,
                          lambda path: plots.confusion(pred, true, metrics, path, title))
