"""``graphs.trace``: export a network with ``torch.export`` and derive its neuron symmetries.

The exported (aten-level) graph is walked once in topological order (:mod:`graphs.tracer`). Every
tensor value gets one label per axis (see :mod:`graphs.labels`); each op's rule (:mod:`graphs.rules`)
relates the labels of its inputs, parameters and outputs. Network inputs and outputs are fixed.
After the walk, the labels of every parameter axis, resolved through the union-find, are the
symmetry structure that :class:`graphs.Layout` records.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graphs.layout import Layout, build_layout, canonical_names
from graphs.rules import RULES, fallback
from graphs.tracer import TensorVal, Tracer, export

__all__ = ["TensorVal", "Tracer", "export", "trace"]


def trace(model: nn.Module, example_inputs: Any, kwargs: dict | None = None) -> Layout:
    """Trace ``model`` and return its :class:`graphs.Layout`.

    Args:
        model: The network. It is exported in eval mode (its mode is restored after).
        example_inputs: A tensor or tuple of positional inputs that run the model.
        kwargs: Keyword inputs, e.g. ``{"attention_mask": mask}``.

    Returns:
        The data-free Layout: every parameter's axis groups, the fixed groups and why.

    Raises:
        UnsupportedNetworkError: If export fails, or a parameterized op has no rule.
    """
    program = export(model, example_inputs, kwargs)
    tracer = Tracer(program, RULES, fallback, canonical_names(model))
    tracer.run()
    return build_layout(tracer, model)
