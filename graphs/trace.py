"""``graphs.trace``: export a network with ``torch.export`` and derive its neuron symmetries.

The exported (aten-level) graph is walked once in topological order (:mod:`graphs.tracer`). Every
tensor value gets one label per axis (see :mod:`graphs.labels`); each op's rule (:mod:`graphs.rules`)
relates the labels of its inputs, parameters and outputs. Network inputs and outputs are fixed.
After the walk, the labels of every parameter axis, resolved through the union-find, are the
symmetry structure that :class:`graphs.Layout` records.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from graphs.errors import UnreadParameterWarning, UnsupportedNetworkError
from graphs.layout import Layout, build_layout, canonical_names
from graphs.rules import RULES, fallback
from graphs.tracer import TensorVal, Tracer, export

__all__ = ["TensorVal", "Tracer", "export", "trace", "trace_program"]


def trace(model: nn.Module, example_inputs: Any, kwargs: dict | None = None) -> Layout:
    """Trace ``model`` and return its :class:`graphs.Layout` (see :func:`trace_program`)."""
    return trace_program(model, example_inputs, kwargs)[0]


def trace_program(model: nn.Module, example_inputs: Any,
                  kwargs: dict | None = None) -> tuple[Layout, torch.export.ExportedProgram]:
    """Trace ``model``: its :class:`graphs.Layout` and the exported program it was derived from.

    The program is what a zoo stores to run the model's function without its source
    (:func:`graphs.program_bytes`).

    A parameter (or persistent float buffer) that the exported graph never reads keeps all its axes fixed,
    and an :class:`~graphs.errors.UnreadParameterWarning` names it: it usually means that the module read a
    cached copy derived from it (see the warning's text), so permuting it alone would not be a symmetry.

    Args:
        model: The network. It is exported in eval mode (its mode is restored after).
        example_inputs: A tensor or tuple of positional inputs that run the model.
        kwargs: Keyword inputs, e.g. ``{"attention_mask": mask}``.

    Returns:
        The data-free Layout (every parameter's axis groups, the fixed groups and why) and the program.

    Raises:
        UnsupportedNetworkError: If export fails, a parameterized op has no rule, or a rule fails.
    """
    program = export(model, example_inputs, kwargs)
    canonical = canonical_names(model)
    tracer = Tracer(program, RULES, fallback, canonical)
    try:
        tracer.run()  # a failing rule already raises UnsupportedNetworkError naming its op and module
        layout = build_layout(tracer, model)
    except UnsupportedNetworkError:
        raise
    except Exception as exc:  # anything else (a label the layout cannot record): report it, never a raw error
        raise UnsupportedNetworkError(
            f"the traced symmetries of {type(model).__name__} could not be recorded ({type(exc).__name__}: {exc})",
            hint="this is a weightgraph bug: please report it with the model") from exc
    _warn_unread(model, tracer, canonical)
    return layout, program


def _warn_unread(model: nn.Module, tracer: Tracer, canonical: dict[str, str]) -> None:
    """Warn about float state that the exported graph never reads (its axes are fixed)."""
    state = model.state_dict(keep_vars=True)
    unread = [name for name, t in state.items() if canonical.get(name, name) == name and t.is_floating_point()
              and (name in tracer.unread or name not in tracer.params)]
    if not unread:
        return
    shown = ", ".join(f"'{n}'" for n in unread[:6]) + (f" and {len(unread) - 6} more" if len(unread) > 6 else "")
    warnings.warn(
        f"{len(unread)} tensor(s) of the state_dict of {type(model).__name__} are never read by the exported graph: "
        f"{shown}. Their axes are fixed (never permuted), so the symmetries stay sound. If the module computes a "
        "cached tensor from them on an eval forward (an attention-bias cache, say), the graph reads that cache as "
        "a constant: build the model afresh (or clear the cache) before graphs.trace to let them be permuted",
        UnreadParameterWarning, stacklevel=3)
