"""``--ema DECAY``: an exponential moving average of the weights, validated and saved in their place.

The average is :class:`torch.optim.swa_utils.AveragedModel` over the parameters; buffers (input
normalizer statistics, BatchNorm running statistics, integer counters) are copied from the trained
model at every update, since averaging them is not meaningful (and integers cannot be averaged).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["WeightEMA"]


class WeightEMA:
    """The EMA of a model's parameters (``decay`` per optimizer step); ``decay=0`` is off (the model itself).

    Args:
        model: The trained model (not its DDP wrapper).
        decay: Weight of the old average at each step, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"--ema {decay}: give a decay in [0, 1), e.g. 0.999 (0: off)")
        self.model = model
        self.averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
                         if decay else None)

    @property
    def enabled(self) -> bool:
        """Whether an average is kept."""
        return self.averaged is not None

    @property
    def module(self) -> nn.Module:
        """The model to validate, evaluate and save: the average, or the trained model when off."""
        return self.averaged.module if self.averaged is not None else self.model

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average; take its buffers as they are."""
        if self.averaged is None:
            return
        self.averaged.update_parameters(model)
        for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def checkpoint_entries(self) -> dict:
        """What a checkpoint needs to resume: the average's state and the trained (raw) weights."""
        if self.averaged is None:
            return {}
        return {"ema": self.averaged.state_dict(), "trained_model": self.model.state_dict()}

    def restore(self, ckpt: dict) -> None:
        """Load a checkpoint written with :meth:`checkpoint_entries` (``--resume``)."""
        if self.averaged is None:
            self.model.load_state_dict(ckpt["model"])
            return
        if "ema" not in ckpt:
            raise ValueError("this run's last.pt was written without --ema; resume it without --ema")
        self.model.load_state_dict(ckpt["trained_model"])
        self.averaged.load_state_dict(ckpt["ema"])
