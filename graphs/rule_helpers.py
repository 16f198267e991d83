"""Helpers every symmetry rule uses, and the rule of ops that have none (:func:`fallback`).

A rule receives the tracer, the fx node and its arguments with every fx node replaced by its
:class:`~graphs.tracer.TensorVal`; it unifies labels and returns the output value.
"""

from __future__ import annotations

from typing import Any

import torch

from graphs.errors import UnsupportedNetworkError
from graphs.labels import OPAQUE
from graphs.tracer import TensorVal, Tracer

__all__ = ["bind", "fallback", "is_weight", "out_shapes", "tensors"]


def bind(node: torch.fx.Node, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments of an aten call by schema name, defaults filled in."""
    schema = node.target._schema
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


def out_shapes(node: torch.fx.Node) -> list[tuple[int, ...]]:
    """Shapes of the tensor outputs of ``node`` (one entry per output)."""
    val = node.meta["val"]
    vals = val if isinstance(val, (list, tuple)) else [val]
    return [tuple(int(s) for s in v.shape) if isinstance(v, torch.Tensor) else () for v in vals]


def tensors(obj) -> list[TensorVal]:
    """Every TensorVal found in (nested) arguments."""
    if isinstance(obj, TensorVal):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors(o)]
    return []


def is_weight(*vals) -> bool:
    """True when every tensor among ``vals`` depends on weights only."""
    ts = tensors(list(vals))
    return bool(ts) and all(t.weight for t in ts)


def fallback(t: Tracer, node, args, kwargs):
    """Ops with no rule: fix every axis they touch; refuse if a weight flows in (unsound otherwise)."""
    ins = tensors([args, kwargs])
    if any(t.param_only(n) for n in node.all_input_nodes):
        raise UnsupportedNetworkError(
            "a parameterized op has no symmetry rule", op=t.op_name(node), module=t.where(node),
            hint="write the layer with supported ops (linear, conv, norms, attention, elementwise), "
                 "or add a rule for this op in graphs/rules_layers.py")
    why = f"op without a symmetry rule {t.op_name(node)}"
    for v in ins:
        for lab in v.labels:
            t.fix(lab, why, OPAQUE)
    outs = [t.tensor([t.fixed(s, OPAQUE, why) for s in shape], shape) for shape in out_shapes(node)]
    return outs[0] if not isinstance(node.meta["val"], (list, tuple)) else tuple(outs)
