"""Example inputs guessed from a network's first layer, so that a plain CNN or MLP traces without a shape.

The first module (in registration order) that holds parameters of its own decides the input:

* ``Conv1d``/``Conv2d``/``Conv3d`` (and their transposes): ``[2, in_channels, S, ...]`` with the
  first spatial size ``S`` in :data:`SPATIAL_SIZES` for which the whole network runs (a size too
  small for its strides and kernels fails, so several are tried);
* ``Linear``: ``[2, in_features]``;
* ``Embedding``: token ids ``long [2, 16]``;
* ``RNN``/``LSTM``/``GRU``: ``[2, 16, input_size]`` (batch first) or ``[16, 2, input_size]``.

Every guess is checked by running the network once on it (in eval mode, without gradients; the
module's training flag is restored). Anything else, or a guess that does not run, is a
``ValueError`` that names the flag to give the shape with.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SPATIAL_SIZES", "infer_example_inputs"]

SPATIAL_SIZES = (32, 28, 64, 16, 8, 224)
"""Spatial sizes tried for a convolutional first layer, in order (CIFAR, MNIST, then larger/smaller)."""

_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2,
              nn.ConvTranspose3d: 3}


def _first_layer(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            return module
    return None


def _candidates(layer: nn.Module) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)
    dtype = next(layer.parameters()).dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    for kind, dims in _CONV_DIMS.items():
        if isinstance(layer, kind):
            return [(torch.randn(2, layer.in_channels, *([size] * dims), generator=gen, dtype=dtype),)
                    for size in SPATIAL_SIZES]
    if isinstance(layer, nn.Linear):
        return [(torch.randn(2, layer.in_features, generator=gen, dtype=dtype),)]
    if isinstance(layer, nn.Embedding):
        return [(torch.randint(0, min(2, layer.num_embeddings), (2, 16), generator=gen),)]
    if isinstance(layer, nn.RNNBase):
        shape = (2, 16, layer.input_size) if layer.batch_first else (16, 2, layer.input_size)
        return [(torch.randn(*shape, generator=gen, dtype=dtype),)]
    return []


def infer_example_inputs(model: nn.Module, flag: str = "--example-input-shape") -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing ``model``, guessed from its first parameterized layer (see module docstring).

    Args:
        model: The network.
        flag: The command-line option that gives the shape instead (named in the error).

    Raises:
        ValueError: The first layer is not one of the known kinds, or no guess runs through the network.
    """
    layer = _first_layer(model)
    candidates = _candidates(layer) if layer is not None else []
    fix = f"pass {flag} (e.g. 1,3,32,32; long:1,16 for token ids) or define example_inputs() beside the factory"
    if not candidates:
        what = type(layer).__name__ if layer is not None else "no layer with parameters"
        raise ValueError(f"cannot guess the example input of {type(model).__name__}: its first layer is {what}, "
                         f"not a Conv/Linear/Embedding/RNN; {fix}")
    training = model.training
    model.eval()
    last = None
    try:
        with torch.no_grad():
            for inputs in candidates:
                try:
                    model(*inputs)
                except Exception as exc:  # any failure means this guess is wrong: try the next one
                    last = exc
                    continue
                return inputs
    finally:
        model.train(training)
    shapes = ", ".join("x".join(map(str, c[0].shape)) for c in candidates[:3])
    reason = " ".join(str(last).split())[:160] if last is not None else ""
    raise ValueError(f"cannot guess the example input of {type(model).__name__} from its first layer "
                     f"{type(layer).__name__}: {shapes}{', ...' if len(candidates) > 3 else ''} do not run "
                     f"({type(last).__name__}: {reason}); {fix}")
