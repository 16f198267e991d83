"""The interface between the two scripts and a task.

``train.py`` runs one loop for every task::

    task = Task(cfg, task_cfg, runtime)
    task.load_data();  model = task.build_model()
    for epoch: for batch in task.batches(epoch): loss = task.loss(module, batch) ...; task.validate(model)

and ``eval.py`` one pipeline::

    data = Task.eval_data(ctx);  model = Task.eval_model(ctx, data);  report = Task.evaluate(model, data, ctx)

A task module subclasses :class:`Task` and fills in what differs: its config fields, data, model,
loss, metrics, report and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from metanets import model_from_checkpoint
from tasks.config import EvalConfig, TrainConfig
from tasks.runtime import Runtime

__all__ = ["EvalContext", "Images", "Report", "Task", "hold_out"]


@dataclass
class EvalContext:
    """Everything an evaluation knows besides the model and its data.

    Attributes:
        ckpt: The checkpoint dict (``model_config``, ``metrics``, ...).
        task_cfg: The task's training options, read from the checkpoint.
        common: The options every evaluation shares (device, batch size, ``--model``, ...).
        options: The task's evaluation options.
        runtime: The device.
        out: Folder for the files the evaluation writes.
    """

    ckpt: dict[str, Any]
    task_cfg: Any
    common: EvalConfig
    options: Any
    runtime: Runtime
    out: str


@dataclass
class Report:
    """What eval.py prints, writes and plots.

    Attributes:
        title: The line above the table.
        header: Column names of the table.
        rows: Table rows (numbers are printed with 4 decimals, 3 where ``digits`` says so).
        result: Written as JSON to ``json_name`` in the output folder (and returned by ``eval.main``).
        plot: Draws the plot into the path it is given; ``None`` when there is none.
        json_name: File name of the JSON.
        plot_name: File name of the plot.
        digits: Decimals of the numbers in the table.
        files: Further files the evaluation wrote (per-model predictions, edited networks).
    """

    title: str
    header: list[str]
    rows: list[list[Any]]
    result: dict[str, Any]
    plot: Callable[[str], None] | None = None
    json_name: str = "metrics.json"
    plot_name: str = "plot.png"
    digits: int = 4
    files: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The title and a markdown table."""
        def cell(v: Any) -> str:
            return f"{v:.{self.digits}f}" if isinstance(v, float) else str(v)

        align = ["---" if not any(isinstance(r[i], (int, float)) for r in self.rows) else "---:"
                 for i in range(len(self.header))]
        lines = [self.title, "| " + " | ".join(self.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        return "\n".join(lines)


@dataclass
class Images:
    """Training images and a held-out tenth of them, on the run's device (the test images are eval's)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def hold_out(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> Images:
    """A fixed (seed 0) 90/10 split of ``(x, y)`` into training and validation images, moved to ``device``."""
    n_val = max(1, len(x) // 10)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return Images(x[perm[n_val:]].to(device), y[perm[n_val:]].to(device), x[perm[:n_val]].to(device),
                  y[perm[:n_val]].to(device))


class Task:
    """One task: its config, data, model, loss, validation metrics and evaluation report.

    Class attributes:
        name: The ``--task`` value.
        Config: Dataclass of the task's training options (flags of ``train.py --task NAME``).
        EvalConfig: Dataclass of the task's evaluation options (flags of ``eval.py``).
        unit: What the training throughput counts (``train_{unit}_per_s`` in the summary).
        select: Validation metric that picks ``best.pt``; ``higher_is_better`` its direction.
        clip_norm: Gradient-norm clip of every step.
        find_unused_parameters: DDP option (models that skip parameters on some steps).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    EvalConfig: ClassVar[type]
    unit: ClassVar[str] = "graphs"
    select: ClassVar[str]
    higher_is_better: ClassVar[bool]
    clip_norm: ClassVar[float] = 1.0
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig, task_cfg: Any, runtime: Runtime) -> None:
        self.cfg, self.tc, self.run = cfg, task_cfg, runtime
        self.device = runtime.device

    # ---------------------------------------------------------------- train
    def load_data(self) -> None:
        """Read the training and validation data."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """The model to train (its ``state_dict`` is the checkpoint's ``model``), on the run's device."""
        raise NotImplementedError

    def training_module(self, model: nn.Module) -> nn.Module:
        """The module the loss runs through (DDP wraps it); the model itself unless the task says otherwise."""
        return model

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch on this rank."""
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterable:
        """The training batches of ``epoch`` on this rank, on the device."""
        raise NotImplementedError

    def loss(self, module: nn.Module, batch: Any) -> tuple[torch.Tensor, int, dict[str, float]]:
        """``(loss, items in the batch, values to log)`` of one training batch, through ``module``."""
        raise NotImplementedError

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics (``select`` among them)."""
        raise NotImplementedError

    def describe(self, model: nn.Module) -> str:
        """The line printed before training."""
        return f"{self.name}: {sum(p.numel() for p in model.parameters()):,} weights on {self.run.describe()}"

    def model_config(self) -> dict[str, Any]:
        """What rebuilds the model (``metanets.model_from_checkpoint`` reads it)."""
        raise NotImplementedError

    def checkpoint_extras(self) -> dict[str, Any]:
        """Further entries of the checkpoint."""
        return {}

    # ----------------------------------------------------------------- eval
    @classmethod
    def eval_data(cls, ctx: EvalContext) -> Any:
        """The data ``evaluate`` scores the model on."""
        raise NotImplementedError

    @classmethod
    def eval_model(cls, ctx: EvalContext, data: Any) -> nn.Module:
        """The trained model to evaluate on ``data`` (rebuilt from ``ctx.ckpt``; not yet on the device)."""
        return model_from_checkpoint(ctx.ckpt)

    @classmethod
    def evaluate(cls, model: nn.Module, data: Any, ctx: EvalContext) -> Report:
        """Metrics of ``model`` on ``data``, as a :class:`Report` (files it writes go under ``ctx.out``)."""
        raise NotImplementedError

