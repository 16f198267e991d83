"""Meta-training and evaluating a GHN on in-memory data (no files: train.py/eval.py do the I/O).

* :class:`GHNLoss` wraps a GHN so one ``forward`` covers a whole meta-batch of architectures: the
  unit DDP wraps (one forward per optimizer step, as DDP requires).
* :func:`accuracy` scores predicted parameters; :func:`finetune` trains a network from a given
  state_dict and records its accuracy after every epoch (from predicted or from random parameters,
  with the same optimizer and budget).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from metanets.hyper.apply import functional_forward, recompute_bn_stats
from metanets.hyper.archgraph import ArchGraph
from metanets.hyper.ghn import GHN

__all__ = ["GHNLoss", "accuracy", "finetune", "predict_params"]


class GHNLoss(nn.Module):
    """Task loss of the networks a GHN predicts for a meta-batch of architectures.

    Every architecture's predicted parameters run the same data batch through
    :func:`torch.func.functional_call` in train mode (BatchNorm uses batch statistics); the loss is the
    mean cross-entropy over architectures, so gradients reach the GHN only.

    Args:
        ghn: The hypernetwork.

    Shapes:
        - input: ``modules`` and ``archs`` (one each per architecture), ``x [B, ...]``, ``y [B]``.
        - output: ``(loss, correct)``: the scalar loss and ``[A]`` the fraction of ``x`` each predicted
          network classifies correctly.
    """

    def __init__(self, ghn: GHN) -> None:
        super().__init__()
        self.ghn = ghn

    def forward(self, modules: Sequence[nn.Module], archs: Sequence[ArchGraph], x: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, correct = [], []
        for module, arch in zip(modules, archs, strict=True):
            module.train()
            with torch.autocast(x.device.type, enabled=False):  # the GHN in float32: its normalization
                params = self.ghn(arch)  # subtracts squared means, which bf16 would not resolve
            logits = functional_forward(module, params, x).float()  # (B, classes); autocast if the caller's
            losses.append(nn.functional.cross_entropy(logits, y))
            correct.append((logits.argmax(1) == y).float().mean().detach())
        return torch.stack(losses).mean(), torch.stack(correct)


@torch.no_grad()
def predict_params(ghn: GHN, module: nn.Module, arch: ArchGraph, bn_batches: Sequence | None = None
                   ) -> dict[str, torch.Tensor]:
    """The GHN's parameters for ``module`` (detached), with BatchNorm statistics recomputed on ``bn_batches``."""
    ghn.eval()
    params = {k: v.detach() for k, v in ghn(arch).items()}
    if bn_batches is not None:
        params = recompute_bn_stats(module, params, bn_batches)
    return params


@torch.no_grad()
def accuracy(module: nn.Module, params: dict[str, torch.Tensor] | None, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1024) -> float:
    """Eval-mode accuracy of ``module`` with ``params`` (or its own parameters when None) on ``(x, y)``."""
    module.eval()
    hits = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        logits = module(xb) if params is None else functional_forward(module, params, xb)
        hits += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return hits / max(len(x), 1)


def finetune(module: nn.Module, state_dict: dict[str, torch.Tensor], train: tuple[torch.Tensor, torch.Tensor],
             test: tuple[torch.Tensor, torch.Tensor], epochs: int, lr: float = 1e-3, batch_size: int = 64,
             seed: int = 0) -> list[float]:
    """Train a copy of ``module`` from ``state_dict`` with Adam; test accuracy after each epoch.

    Returns:
        ``[acc_0, acc_1, ..., acc_epochs]``: accuracy before training and after every epoch.
    """
    net = copy.deepcopy(module)
    net.load_state_dict(state_dict)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = train
    curve = [accuracy(net, None, *test)]
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size].to(x.device)
            if len(idx) < 2:  # BatchNorm cannot train on a single example
                continue
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.append(accuracy(net, None, *test))
    return curve
