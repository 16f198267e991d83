"""Running predicted parameters: ``functional_call``, BatchNorm statistics, loadable state_dicts.

Predicted tensors are never written into a module; they are passed to
:func:`torch.func.functional_call` together with the module's own non-predicted buffers, so the same
module object serves any number of predictions (and gradients flow back into the hypernetwork).

BatchNorm: a GHN predicts the affine parameters only. Running statistics start at ``0``/``1`` and are
recomputed on a few training batches, as GHN-2 does (:func:`recompute_bn_stats`: train-mode passes
with a cumulative average, no gradient). During meta-training the predicted networks run in train
mode and normalize with batch statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["full_state_dict", "functional_forward", "recompute_bn_stats"]

_BN = (nn.modules.batchnorm._BatchNorm,)


def full_state_dict(module: nn.Module, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``params`` completed with the module's other buffers (integer counters, constant masks).

    The result has exactly the keys of ``module.state_dict()`` (tied aliases included), so
    ``module.load_state_dict(full_state_dict(module, params))`` works.
    """
    own = module.state_dict(keep_vars=True)
    out: dict[str, torch.Tensor] = {}
    first: dict[int, str] = {}
    for name, t in own.items():
        canonical = first.setdefault(id(t), name)
        if name in params:
            out[name] = params[name]
        elif canonical in params:
            out[name] = params[canonical]
        else:
            out[name] = t.detach()
    return out


def functional_forward(module: nn.Module, params: dict[str, torch.Tensor], *args, **kwargs):
    """Run ``module`` with predicted ``params`` (and its own remaining buffers) through ``functional_call``."""
    return functional_call(module, full_state_dict(module, params), args, kwargs, tie_weights=True, strict=False)


@torch.no_grad()
def recompute_bn_stats(module: nn.Module, params: dict[str, torch.Tensor], batches: Iterable
                       ) -> dict[str, torch.Tensor]:
    """Recompute every BatchNorm's running mean/var for ``params`` on ``batches`` (inputs, or (x, y) pairs).

    Returns a new dict: ``params`` with fresh running statistics (cumulative averages over the batches) and
    detached values. The module's own state and modes are left as they were.
    """
    bns = [(n, m) for n, m in module.named_modules() if isinstance(m, _BN) and m.track_running_stats]
    state = {k: v.detach().clone() for k, v in full_state_dict(module, params).items()}
    if not bns:
        return {k: state[k] for k in params}
    for name, _ in bns:
        prefix = f"{name}." if name else ""
        state[prefix + "running_mean"].zero_()
        state[prefix + "running_var"].fill_(1.0)
        if prefix + "num_batches_tracked" in state:
            state[prefix + "num_batches_tracked"].zero_()
    modes = {m: m.training for m in module.modules()}
    momenta = {m: m.momentum for _, m in bns}
    try:
        module.train()
        for _, m in bns:
            m.momentum = None  # cumulative moving average over the batches
        n = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            functional_call(module, state, (x,), tie_weights=True, strict=False)
            n += 1
        if n == 0:
            raise ValueError("recompute_bn_stats needs at least one batch")
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, mom in momenta.items():
            m.momentum = mom
    return {k: state[k] for k in params}
