"""``--task classify``: classify each network (e.g. the class an INR draws) from its weights.

Cross-entropy on the label column (``class`` by default); ``best.pt`` has the highest validation
accuracy. Eval: accuracy (and more); a confusion matrix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.metrics import classification_metrics
from tasks import plots
from tasks.base import EvalContext, Report
from tasks.metanet import MetanetConfig, MetanetTask, ZooEval
from tasks.predict import files_report, write_csv, zoo_report

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

    def check_target(self, column) -> None:
        """Class ids: integers from 0 (a float column only when every value is a whole number)."""
        super().check_target(column)
        values = column.double()
        if not torch.equal(values, values.round()) or values.min() < 0:
            raise ValueError(f"label {self.tc.target!r} holds values such as {float(values[0]):g} that are not class "
                             "ids (whole numbers from 0); --task classify needs a class label, --task predict "
                             "regresses a continuous one")

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
        pred, true, index = cls.outputs(model, data, ctx)
        if data.paths is not None:
            return files_report(data.paths, pred, task_cfg, lambda p: f"class {int(p.argmax())}", ctx.out)
        metrics = classification_metrics(pred, true)
        csv_path = write_csv(os.path.join(ctx.out, "predictions.csv"), ["zoo_index", task_cfg.target, "predicted"],
                             zip(index.tolist(), true[:, 0].astype(int).tolist(), pred.argmax(1).tolist(), strict=True))
        title = f"{task_cfg.model}: {task_cfg.target}"
        return zoo_report(cls.name, metrics, data, task_cfg,
                          lambda path: plots.confusion(pred, true, metrics, path, title), [csv_path])
