"""Symmetry rules for shape, elementwise and reduction ops, and the rule table.

A rule receives the tracer, the fx node and its arguments with every fx node replaced by its
:class:`~graphs.tracer.TensorVal`; it unifies labels and returns the output value (a TensorVal,
or a tuple of them for multi-output ops). Layer rules (linear, conv, norms, attention, ...) live
in :mod:`graphs.rules_layers`. See ``SYMMETRY.md`` for the reasoning behind each rule.
"""

from __future__ import annotations

from typing import Any

import torch

from graphs.labels import CONSTANT, UNIT
from graphs.rule_helpers import bind, fallback, is_weight, out_shapes, tensors
from graphs.rules_layers import LAYER_RULES
from graphs.rules_select import (
    argreduce,
    cat,
    fix_dims,
    gather,
    index_select,
    index_tensor,
    pad,
    reduction,
    select,
    slice_,
    softmax,
    split,
    stack,
)
from graphs.tracer import TensorVal, Tracer

__all__ = ["RULES", "bind", "fallback"]


# -------------------------------------------------------------- elementwise
def elementwise(t: Tracer, node, args, kwargs) -> TensorVal:
    """Broadcasting elementwise op: unify right-aligned axes of size > 1 with the output's.

    A size-1 output axis takes the label of an operand computed from the input if there is one: a weight's
    unit axis (``gain[1, 1, D]`` times activations of a batch of 1) must not become the activations' axis.
    """
    shape = out_shapes(node)[0]
    ins = tensors([args, kwargs])
    labels: list = [None] * len(shape)
    for v in sorted(ins, key=lambda v: v.weight):  # activations first (stable)
        off = len(shape) - len(v.shape)
        for i, s in enumerate(v.shape):
            j = i + off
            if j < 0 or s != shape[j]:
                continue
            if labels[j] is None:
                labels[j] = v.labels[i]
            elif s != 1:  # size-1 axes may be broadcast: they are not unified
                t.unify(labels[j], v.labels[i], "elementwise operands")
    labels = [lab if lab is not None else (UNIT if s == 1 else t.fresh(s))
              for lab, s in zip(labels, shape, strict=True)]
    src = ins[0].src if len(ins) == 1 and ins[0].shape == shape else None
    return t.tensor(labels, shape, weight=is_weight(ins), src=src)


def passthrough_first(t: Tracer, node, args, kwargs) -> TensorVal:
    """Ops returning a relabelled copy of their first argument (clone, to, contiguous...)."""
    x = args[0]
    return t.tensor(x.labels, x.shape, x.weight, x.src)


def multi_passthrough(t: Tracer, node, args, kwargs):
    """Ops returning ``(y, extra...)`` where ``y`` has the input's labels (native_dropout)."""
    x = args[0]
    return tuple(t.tensor(x.labels, s, x.weight) for s in out_shapes(node))


def factory(t: Tracer, node, args, kwargs) -> TensorVal:
    """Tensor factories (arange, rand, eye, ...): values vary along every axis, so each axis is fixed."""
    shape = out_shapes(node)[0]
    return t.tensor([t.fixed(s, CONSTANT, "constant tensor") for s in shape], shape, weight=True)


def uniform(t: Tracer, node, args, kwargs) -> TensorVal:
    """zeros/ones/full (and _like/new_ forms): one value everywhere, so any permutation leaves it unchanged."""
    shape = out_shapes(node)[0]
    return t.tensor([t.fresh(s) for s in shape], shape, weight=True)


# -------------------------------------------------------------- reshaping
def reshape(t: Tracer, node, args, kwargs) -> TensorVal:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze: match axes by products of sizes."""
    x: TensorVal = args[0]
    shape = out_shapes(node)[0]
    origin: list = [None] * len(shape)
    labels = reshape_labels(t, x.labels, x.shape, shape, origin)
    src = None
    if x.src is not None:  # output axes that are one input axis keep the parameter axis map
        src = (x.src[0], tuple(None if i is None or shape[j] == 1 else x.src[1][i] for j, i in enumerate(origin)))
        if all(a is None for a in src[1]):
            src = None
    return t.tensor(labels, shape, x.weight, src)


def reshape_labels(t: Tracer, labels: list, src_shape, dst_shape, origin: list | None = None) -> list:
    """Labels of a reshape from ``src_shape`` to ``dst_shape`` (row-major).

    ``origin``, if given, receives for every output axis the input axis it is (None when it is a merge or a
    split of input axes, or a new unit axis).
    """
    src = [(i, lab, s) for i, (lab, s) in enumerate(zip(labels, src_shape, strict=True)) if s != 1]
    out: list = [UNIT] * len(dst_shape)
    ones_in = [lab for lab, s in zip(labels, src_shape, strict=True) if s == 1]
    ones_out = [j for j, s in enumerate(dst_shape) if s == 1]
    if len(ones_in) == len(ones_out):  # squeeze/unsqueeze-free size-1 axes keep their identity
        for j, lab in zip(ones_out, ones_in, strict=True):
            out[j] = lab
    dst = [(j, s) for j, s in enumerate(dst_shape) if s != 1]
    i = j = 0
    while i < len(src) or j < len(dst):
        gi, gj = [src[i]], [dst[j]]
        pi, pj = src[i][2], dst[j][1]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                gi.append(src[i])
                pi *= src[i][2]
                i += 1
            else:
                gj.append(dst[j])
                pj *= dst[j][1]
                j += 1
        if len(gi) == 1 and len(gj) == 1:
            out[gj[0][0]] = gi[0][1]
            if origin is not None:
                origin[gj[0][0]] = gi[0][0]
        elif len(gj) == 1:
            out[gj[0][0]] = ("p", tuple(lab for _, lab, _ in gi))
        else:
            new = [t.fresh(s) for _, s in gj]
            t.unify(("p", tuple(lab for _, lab, _ in gi)), ("p", tuple(new)), "reshape")
            for (k, _), lab in zip(gj, new, strict=True):
                out[k] = lab
    return out


def permute_axes(t: Tracer, node, args, kwargs) -> TensorVal:
    """transpose/permute/t/movedim: move labels with the axes."""
    x: TensorVal = args[0]
    name = node.target._schema.name.split("::")[-1].rstrip("_")  # transpose_ and t_ act like transpose, t
    n = len(x.shape)
    b = bind(node, args, kwargs)
    order = list(range(n))
    if name in ("transpose", "swapaxes", "swapdims"):
        d0, d1 = b.get("dim0", b.get("axis0")) % n, b.get("dim1", b.get("axis1")) % n
        order[d0], order[d1] = order[d1], order[d0]
    elif name == "permute":
        order = [d % n for d in b["dims"]]
    elif name in ("t", "numpy_T") and n == 2 or name in ("mT", "adjoint"):
        order[-2], order[-1] = order[-1], order[-2]
    elif name == "movedim":
        src = [d % n for d in (b["source"] if isinstance(b["source"], (list, tuple)) else [b["source"]])]
        dst = [d % n for d in (b["destination"] if isinstance(b["destination"], (list, tuple)) else [b["destination"]])]
        rest = [d for d in range(n) if d not in src]
        order = [None] * n
        for s_, d_ in zip(src, dst, strict=True):
            order[d_] = s_
        it = iter(rest)
        order = [o if o is not None else next(it) for o in order]
    labels = [x.labels[o] for o in order]
    shape = tuple(x.shape[o] for o in order)
    src = (x.src[0], tuple(x.src[1][o] for o in order)) if x.src else None
    return t.tensor(labels, shape, x.weight, src)


def expand(t: Tracer, node, args, kwargs) -> TensorVal:
    """expand/broadcast_to: new or stretched axes hold identical values, so they get fresh groups."""
    x: TensorVal = args[0]
    shape = out_shapes(node)[0]
    off = len(shape) - len(x.shape)
    labels = []
    for j, s in enumerate(shape):
        i = j - off
        labels.append(x.labels[i] if i >= 0 and x.shape[i] == s else t.fresh(s))
    return t.tensor(labels, shape, x.weight)


def repeat(t: Tracer, node, args, kwargs) -> TensorVal:
    """Repeat (tiling): axis ``i`` becomes ``copies x original``."""
    x: TensorVal = args[0]
    reps = list(bind(node, args, kwargs)["repeats"])
    shape = out_shapes(node)[0]
    off = len(reps) - len(x.shape)
    labels = []
    for j, r in enumerate(reps):
        i = j - off
        base = x.labels[i] if i >= 0 else UNIT
        labels.append(("p", (t.fresh(r), base)) if r > 1 else base)
    return t.tensor([t.alg.resolve(lab) for lab in labels], shape, x.weight)


def repeat_interleave(t: Tracer, node, args, kwargs) -> TensorVal:
    """repeat_interleave by an int along ``dim``: unit ``i`` becomes copies ``(i, 0..r-1)``, i.e. ``original x copies``.

    Per-unit repeat counts (a tensor) or no ``dim`` (flattening) fix the axes involved.
    """
    b = bind(node, args, kwargs)
    x, reps, dim = b["self"], b["repeats"], b.get("dim")
    shape = out_shapes(node)[0]
    if not isinstance(x, TensorVal) or dim is None or not isinstance(reps, int):
        return fallback(t, node, args, kwargs)
    dim %= len(x.shape)
    labels = list(x.labels)
    labels[dim] = t.alg.resolve(("p", (x.labels[dim], t.fresh(reps)))) if reps > 1 else x.labels[dim]
    return t.tensor(labels, shape, x.weight)


_ELEMENTWISE = """add sub mul div rsub true_divide where maximum minimum fmax fmin pow float_power eq ne lt gt le ge
logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor __and__ __or__ __xor__ masked_fill lerp
addcmul addcdiv floor_divide remainder fmod atan2 hypot copysign clamp clamp_min clamp_max relu relu6 gelu silu
sigmoid tanh sin cos tan exp exp2 log log2 log10 log1p expm1 abs neg sqrt rsqrt reciprocal square erf erfc erfinv
sign sgn floor ceil round trunc hardtanh hardswish hardsigmoid leaky_relu rrelu elu selu celu softplus mish logit
logical_not bitwise_not isnan isinf isfinite nan_to_num dropout alpha_dropout feature_dropout feature_alpha_dropout
threshold fill zero positive frac asin acos atan sinh cosh asinh acosh atanh xlogy hardshrink softshrink log_sigmoid
copy scalar_tensor_like
""".split()
# other names torch gives the same elementwise ops
_ALIASES = """multiply divide subtract clip negative absolute arcsin arccos arctan arcsinh arccosh arctanh arctan2
greater greater_equal less less_equal not_equal fix special_expit special_erf special_erfc special_exp2 special_expm1
special_log1p special_logit special_round special_xlogy special_erfinv""".split()
_PASSTHROUGH = "clone contiguous detach alias lift_fresh_copy _to_copy to type_as _assert_tensor_metadata".split()
_FACTORY = """arange empty rand randn randint tensor scalar_tensor empty_like rand_like randn_like new_empty linspace
logspace eye empty_strided""".split()
_UNIFORM = "zeros ones full zeros_like ones_like full_like new_zeros new_ones new_full".split()
_RESHAPE = """view _unsafe_view reshape view_copy flatten unflatten squeeze unsqueeze squeeze_copy unsqueeze_copy
reshape_as view_as""".split()
_PERMUTE = "transpose swapaxes swapdims permute t numpy_T mT adjoint movedim".split()
_REDUCE = """mean sum amax amin max min var std var_mean std_mean logsumexp prod nansum nanmean norm linalg_vector_norm
any all count_nonzero""".split()
# ops that change their first argument in place and return it: the same rule as the pure op
_INPLACE_SHAPE = "detach_ squeeze_ unsqueeze_ t_ transpose_ swapaxes_ swapdims_".split()

RULES: dict[str, Any] = {}
RULES.update({k: elementwise for k in _ELEMENTWISE + _ALIASES})
RULES.update({f"{k}_": elementwise for k in _ELEMENTWISE + _ALIASES  # in-place forms (relu_, div_, ...)
              if hasattr(torch.ops.aten, f"{k}_")})
RULES.update({"__iand__": elementwise, "__ior__": elementwise, "__ixor__": elementwise})
RULES.update({"max.other": elementwise, "min.other": elementwise})  # two-tensor max/min (the rest reduce)
RULES.update({k: passthrough_first for k in _PASSTHROUGH})
RULES.update({k: factory for k in _FACTORY})
RULES.update({k: uniform for k in _UNIFORM})
RULES.update({k: reshape for k in _RESHAPE})
RULES.update({k: permute_axes for k in _PERMUTE})
RULES.update({k: reduction for k in _REDUCE})
RULES.update({
    "native_dropout": multi_passthrough, "expand": expand, "expand_as": expand, "broadcast_to": expand,
    "repeat": repeat, "repeat_interleave": repeat_interleave, "slice": slice_, "narrow": slice_, "split": split,
    "split_with_sizes": split,
    "chunk": split, "tensor_split": split, "unsafe_split": split, "select": select, "unbind": select,
    "cat": cat, "concat": cat, "concatenate": cat, "stack": stack, "flip": fix_dims, "roll": fix_dims,
    "cumsum": fix_dims, "cumprod": fix_dims, "sort": fix_dims, "topk": fix_dims, "tril": fix_dims,
    "triu": fix_dims, "index_select": index_select, "index": index_tensor, "gather": gather,
    "constant_pad_nd": pad, "pad": pad, "reflection_pad1d": pad, "reflection_pad2d": pad,
    "reflection_pad3d": pad, "replication_pad1d": pad, "replication_pad2d": pad, "replication_pad3d": pad,
    "argmax": argreduce, "argmin": argreduce, "softmax": softmax, "log_softmax": softmax,
    "_softmax": softmax, "_log_softmax": softmax,
})

RULES.update({k: RULES[k[:-1]] for k in _INPLACE_SHAPE})
RULES.update(LAYER_RULES)
