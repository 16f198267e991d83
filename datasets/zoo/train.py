"""Train one classifier from a sampled :class:`RunConfig`, keeping checkpoints at chosen epochs.

A run is a pure function of its config and the data: the model is initialized, and minibatches are
shuffled and dropped out, from RNGs seeded by ``RunConfig.seed`` inside a forked RNG scope, so the
same config gives bit-identical weights (on the same device kind) and the caller's RNG is untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from datasets.zoo.data import ArrayData
from datasets.zoo.models import ModelSpec, build_model, init_weights

__all__ = ["Checkpoint", "RunConfig", "evaluate", "train_run"]


@dataclass(frozen=True)
class RunConfig:
    """One training run, as sampled from a recipe.

    Attributes:
        run: Index of the run within its zoo (a label: checkpoints of one run share it).
        seed: Seed for initialization, shuffling and dropout.
        spec: Architecture.
        init: Weight initialization scheme (see :data:`datasets.zoo.models.INITS`).
        init_std: Standard deviation for ``normal``/``truncated_normal`` init.
        optimizer: ``adam``, ``sgd`` or ``momentum`` (SGD with momentum 0.9).
        lr: Learning rate.
        weight_decay: L2 weight decay.
        epochs: Training epochs.
        batch_size: Minibatch size.
        train_fraction: Fraction of the training set used (subset chosen by ``seed``).
        checkpoint_epochs: Epochs after which the weights are kept (0 = at initialization).
    """

    run: int
    seed: int
    spec: ModelSpec
    init: str = "default"
    init_std: float = 0.05
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 5
    batch_size: int = 64
    train_fraction: float = 1.0
    checkpoint_epochs: tuple[int, ...] = field(default=(5,))

    def labels(self) -> dict[str, float | int | str]:
        """Hyperparameters as label columns (shared by every checkpoint of the run)."""
        s = self.spec
        return {"run": self.run, "seed": self.seed, "family": s.family, "width": s.width, "depth": s.depth,
                "activation": s.activation, "dropout": s.dropout, "init": self.init, "init_std": self.init_std,
                "optimizer": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay,
                "epochs": self.epochs, "batch_size": self.batch_size, "train_fraction": self.train_fraction}


@dataclass
class Checkpoint:
    """Weights after ``epoch`` epochs and their ``train_acc``, ``train_loss``, ``test_acc``, ``test_loss``."""

    epoch: int
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` in eval mode on ``(x, y)``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size])
        correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
        loss += float(F.cross_entropy(logits, y[i:i + batch_size], reduction="sum"))
    model.train(was_training)
    return correct / len(y), loss / len(y)


def _optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'adam', 'sgd' or 'momentum'")


def _snapshot(model: nn.Module, epoch: int, data: tuple[torch.Tensor, ...]) -> Checkpoint:
    x, y, xt, yt = data
    train_acc, train_loss = evaluate(model, x, y)
    test_acc, test_loss = evaluate(model, xt, yt)
    sd = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return Checkpoint(epoch, sd, {"train_acc": train_acc, "train_loss": train_loss, "test_acc": test_acc,
                                  "test_loss": test_loss})


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train_run(cfg: RunConfig, data: ArrayData, device: str | torch.device = "cpu") -> list[Checkpoint]:
    """Train one network and return its checkpoints at ``cfg.checkpoint_epochs``.

    A run whose weights or loss become non-finite stops there; its later checkpoints are dropped
    (the Small CNN Zoo likewise lacks the rows of crashed runs).

    Args:
        cfg: The run.
        data: Training and test data (any device; copied to ``device``).
        device: Where to train.
    """
    device = torch.device(device)
    data = data.subsample_train(cfg.train_fraction, cfg.seed)
    tensors = tuple(t.to(device) for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    x, y = tensors[0], tensors[1]
    keep = set(cfg.checkpoint_epochs)
    out: list[Checkpoint] = []
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices, device_type=device.type if rng_devices else "cuda"):
        torch.manual_seed(cfg.seed)
        model = init_weights(build_model(cfg.spec), cfg.init, cfg.init_std).to(device)
        opt = _optimizer(cfg, model.parameters())
        shuffle = torch.Generator().manual_seed(cfg.seed)
        if 0 in keep:
            out.append(_snapshot(model, 0, tensors))
        model.train()
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(len(y), generator=shuffle).to(device)
            for i in range(0, len(y), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if not (math.isfinite(loss.item()) and _finite(model)):
                break
            if epoch in keep:
                out.append(_snapshot(model, epoch, tensors))
    return out
