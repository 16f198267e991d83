"""Symmetry rules for layers: linear/matmul/einsum, convolution, normalization, pooling, attention.

Also embedding and recurrent layers. See ``SYMMETRY.md`` for the reasoning; helpers live in :mod:`graphs.rule_helpers`.
"""

from __future__ import annotations

import re
from typing import Any

from graphs.labels import SPATIAL, UNIT
from graphs.rule_helpers import bind, fallback, is_weight, out_shapes
from graphs.tracer import TensorVal, Tracer

__all__ = ["LAYER_RULES"]


def _batch_unify(t: Tracer, xs: list[tuple[TensorVal, int]], nb: int, shape: tuple[int, ...]) -> list:
    """Unify the broadcast batch axes of operands ``(value, n_core_axes)``; return the output's labels."""
    labels: list = [None] * nb
    for v, core in xs:
        off = nb - (len(v.shape) - core)
        for i in range(len(v.shape) - core):
            s, j = v.shape[i], i + off
            if s == 1 or j < 0 or s != shape[j]:
                continue
            if labels[j] is None:
                labels[j] = v.labels[i]
            else:
                t.unify(labels[j], v.labels[i], "batch axes")
    return [lab if lab is not None else (UNIT if s == 1 else t.fresh(s)) for lab, s in zip(labels, shape, strict=True)]


def matmul_labels(t: Tracer, a: TensorVal, b: TensorVal, shape: tuple[int, ...]) -> list:
    """Labels of ``a @ b`` (numpy matmul semantics) and the contraction's unification."""
    a2, b2 = len(a.shape) == 1, len(b.shape) == 1
    t.unify(a.labels[-1], b.labels[0] if b2 else b.labels[-2], "matmul contraction")
    if not a2:
        t.note_direction(a, -1, -2)
    if not b2:
        t.note_direction(b, -2, -1)
    nb = len(shape) - (0 if a2 else 1) - (0 if b2 else 1)
    batch = _batch_unify(t, [(a, 1 if a2 else 2), (b, 1 if b2 else 2)], nb, shape[:nb])
    tail = ([] if a2 else [a.labels[-2]]) + ([] if b2 else [b.labels[-1]])
    return batch + tail


def matmul(t: Tracer, node, args, kwargs) -> TensorVal:
    """mm/bmm/matmul: contract ``a[-1]`` with ``b[-2]``; batch axes broadcast."""
    a, b = args[0], args[1]
    shape = out_shapes(node)[0]
    t.note_role(a, "linear")
    t.note_role(b, "linear")
    return t.tensor(matmul_labels(t, a, b, shape), shape, is_weight(a, b))


def addmm(t: Tracer, node, args, kwargs) -> TensorVal:
    """addmm/baddbmm/addmv: ``bias + a @ b``."""
    c, a, b = args[0], args[1], args[2]
    shape = out_shapes(node)[0]
    t.note_role(a, "linear")
    t.note_role(b, "linear")
    labels = matmul_labels(t, a, b, shape)
    _add_bias(t, c, labels, shape)
    return t.tensor(labels, shape, is_weight(a, b, c))


def _add_bias(t: Tracer, c: TensorVal | None, labels: list, shape) -> None:
    if not isinstance(c, TensorVal):
        return
    t.note_role(c, "bias")
    off = len(shape) - len(c.shape)
    for i, s in enumerate(c.shape):
        if s == shape[i + off]:  # aligned axes, including a single output unit
            t.unify(c.labels[i], labels[i + off], "bias")


def linear(t: Tracer, node, args, kwargs) -> TensorVal:
    """linear: ``y = x W^T + b`` with ``W[out, in]``: ``in`` is the input's last axis."""
    b = bind(node, args, kwargs)
    x, w, bias = b["input"], b["weight"], b["bias"]
    shape = out_shapes(node)[0]
    t.note_role(w, "linear")
    t.note_direction(w, -1, 0)
    t.unify(w.labels[-1], x.labels[-1], "linear input")
    labels = list(x.labels[:-1]) + [w.labels[0]]
    _add_bias(t, bias, labels, shape)
    return t.tensor(labels, shape, is_weight(x, w, bias))


def einsum(t: Tracer, node, args, kwargs) -> TensorVal:
    """einsum: equal subscripts unify; the output takes its subscripts' labels."""
    b = bind(node, args, kwargs)
    eq, ops = b["equation"].replace(" ", ""), [v for v in b["tensors"]]
    shape = out_shapes(node)[0]
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if "." in eq:  # ellipsis subscripts: no rule yet, stay sound
        return _opaque(t, node, ops)
    if "->" not in eq:
        rhs = "".join(sorted(c for c in set(lhs.replace(",", "")) if lhs.replace(",", "").count(c) == 1))
    by_letter: dict[str, Any] = {}
    for term, v in zip(terms, ops, strict=True):
        for ch, lab, s in zip(term, v.labels, v.shape, strict=True):
            if s == 1:
                continue
            if ch in by_letter:
                t.unify(by_letter[ch], lab, "einsum subscript")
            else:
                by_letter[ch] = lab
    for v in ops:
        t.note_role(v, "linear")
    labels = [by_letter.get(ch, UNIT) if s > 1 else UNIT for ch, s in zip(rhs, shape, strict=True)]
    return t.tensor(labels, shape, is_weight(ops))


def grouped_mm(t: Tracer, node, args, kwargs) -> TensorVal:
    """Grouped matmul of stacked expert weights (``_grouped_mm``, Hugging Face's ``grouped_mm_fallback``).

    ``x[S, K] @ W[E, K, N] -> y[S, N]`` with the rows of ``x`` sorted by expert and ``offs`` the end of each
    expert's rows: ``K`` is contracted, ``N`` is one group for all experts (a sound subgroup of permuting each
    expert's units on its own). Which expert a row uses depends on the data, so the expert axis is fixed; it
    becomes an edge-vector slot (like a kernel offset). ``x[E, M, K] @ W[E, K, N]`` (no offsets) is a batched
    matmul whose expert axes align. Other layouts (2-d weights split by offsets) stay unsupported.
    """
    b = bind(node, args, kwargs)
    x, w = b.get("self", b.get("input")), b.get("mat2", b.get("weight"))
    offs, bias = b.get("offs"), b.get("bias")
    shape = out_shapes(node)[0]
    t.note_role(w, "linear")
    if len(x.shape) == 2 and len(w.shape) == 3 and isinstance(offs, TensorVal):
        t.fix(w.labels[0], "expert index (rows are routed to experts by the data)", SPATIAL)
        t.fix(x.labels[0], "rows grouped by expert")
        t.unify(x.labels[1], w.labels[1], "grouped matmul contraction")
        t.note_direction(w, 1, 2)
        labels = [x.labels[0], w.labels[2]]
    elif len(x.shape) == 3 and len(w.shape) == 3 and offs is None:
        t.fix(w.labels[0], "expert index of a stacked weight", SPATIAL)
        t.unify(x.labels[0], w.labels[0], "grouped matmul experts")
        t.unify(x.labels[2], w.labels[1], "grouped matmul contraction")
        t.note_direction(w, 1, 2)
        labels = [w.labels[0], x.labels[1], w.labels[2]]
    else:
        return fallback(t, node, args, kwargs)
    if isinstance(bias, TensorVal):  # one bias row per expert: [E, N]
        t.note_role(bias, "bias")
        t.unify(bias.labels[-1], labels[-1], "grouped matmul bias")
        t.unify(bias.labels[0], w.labels[0], "grouped matmul bias experts")
    return t.tensor(labels, shape, is_weight(x, w))


def weight_norm(t: Tracer, node, args, kwargs):
    """``_weight_norm(v, g, dim)``: ``w = g * v / ||v||`` (norm over every axis but ``dim``).

    The norm is invariant to permuting the axes it sums over, and ``g`` scales along ``dim``: ``w`` has
    ``v``'s labels, and ``g``'s axes of size > 1 are ``v``'s. ``w`` keeps ``v``'s parameter axis map, so the
    layer that uses ``w`` records its role and direction on ``v``.
    """
    b = bind(node, args, kwargs)
    v, g = b["v"], b["g"]
    t.note_role(g, "scale")
    off = len(v.shape) - len(g.shape)
    for i, s in enumerate(g.shape):
        if s > 1 and i + off >= 0 and v.shape[i + off] == s:
            t.unify(g.labels[i], v.labels[i + off], "weight norm scale")
    w = t.tensor(v.labels, v.shape, is_weight(v, g), v.src)
    if not isinstance(node.meta["val"], (list, tuple)):
        return w
    return w, t.tensor(g.labels, g.shape, is_weight(v, g))  # _weight_norm_interface: (w, norms)


def im2col(t: Tracer, node, args, kwargs) -> TensorVal:
    """im2col (``F.unfold``): ``x[B, C, H, W] -> [B, C x K, L]`` with kernel offsets ``K`` and positions ``L`` fixed."""
    x: TensorVal = args[0]
    shape = out_shapes(node)[0]
    c = len(x.shape) - 3  # channel axis (0 when unbatched)
    for d in (1, 2):
        t.fix(x.labels[c + d], "spatial position (im2col input)", SPATIAL)
    k = shape[c] // x.shape[c]
    cols = ("p", (x.labels[c], t.fixed(k, SPATIAL, "kernel offset (im2col)")))
    labels = list(x.labels[:c]) + [t.alg.resolve(cols), t.fixed(shape[c + 1], SPATIAL, "sliding-window position")]
    return t.tensor(labels, shape, x.weight)


def col2im(t: Tracer, node, args, kwargs) -> TensorVal:
    """col2im (``F.fold``): ``x[B, C x K, L] -> [B, C, H, W]``; windows overlap and add, so ``K``, ``L`` are fixed."""
    x: TensorVal = args[0]
    shape = out_shapes(node)[0]
    c = len(shape) - 3
    chan = t.fresh(shape[c])
    t.unify(x.labels[c], ("p", (chan, t.fixed(x.shape[c] // shape[c], SPATIAL, "kernel offset (col2im)"))), "col2im")
    t.fix(x.labels[c + 1], "sliding-window position (col2im input)", SPATIAL)
    labels = list(x.labels[:c]) + [chan] + [t.fixed(s, SPATIAL, "spatial position") for s in shape[c + 1:]]
    return t.tensor(labels, shape, x.weight)


def unfold_windows(t: Tracer, node, args, kwargs) -> TensorVal:
    """``Tensor.unfold(dim, size, step)``: sliding windows along ``dim``.

    The windowed axis and the window index are fixed (positions); the new offset-in-window axis is a fixed
    spatial axis, like a kernel offset, so a layer reading the flattened windows gets edge slots.
    """
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    shape = out_shapes(node)[0]
    labels = list(x.labels)
    if x.shape:
        dim = b["dimension"] % len(x.shape)
        kinds = {k for a in t.alg.atoms(x.labels[dim]) for k in t.alg.atom_info(a)[2]}
        kind = SPATIAL if SPATIAL in kinds else "constant"
        t.fix(x.labels[dim], "sliding windows (unfold)", kind)
        labels[dim] = t.fixed(shape[dim], kind, "window index (unfold)")
    labels.append(t.fixed(shape[-1], SPATIAL, "offset in the window (unfold)"))
    return t.tensor(labels, shape, x.weight)


def _opaque(t: Tracer, node, ops):
    return fallback(t, node, tuple(ops), {})


# ------------------------------------------------------------- convolution
def convolution(t: Tracer, node, args, kwargs) -> TensorVal:
    """convNd/convolution/conv_transposeNd, any groups (see SYMMETRY.md, convolution)."""
    name = node.target._schema.name.split("::")[-1]
    b = bind(node, args, kwargs)
    x, w, bias = b["input"], b["weight"], b["bias"]
    transposed = "transpose" in name or bool(b.get("transposed"))
    groups = int(b.get("groups") or 1)
    shape = out_shapes(node)[0]
    k = len(w.shape) - 2
    c = len(x.shape) - k - 1  # channel axis (0 when unbatched)
    t.note_role(w, "conv")
    t.note_role(bias, "bias")
    for d in range(k):
        t.fix(w.labels[2 + d], "kernel offset", SPATIAL)
        t.fix(x.labels[c + 1 + d], "spatial position (convolution input)", SPATIAL)
    w_in, w_out = (0, 1) if transposed else (1, 0)
    t.note_direction(w, w_in, w_out)
    if groups == 1:
        t.unify(w.labels[w_in], x.labels[c], "convolution input channels")
        out = w.labels[w_out]
    else:
        blocks = t.fresh(groups)
        if transposed:
            t.unify(w.labels[0], x.labels[c], "convolution input channels")
            t.unify(x.labels[c], ("p", (blocks, t.fresh(x.shape[c] // groups))), "grouped convolution blocks")
            out = ("p", (blocks, w.labels[1]))
        else:
            if w.shape[1] == 1:  # depthwise: each kernel acts on one channel; it is a per-channel vector
                t.fix(w.labels[1], "depthwise kernel input", SPATIAL)
            t.unify(x.labels[c], ("p", (blocks, w.labels[1])), "grouped convolution blocks")
            t.unify(w.labels[0], ("p", (blocks, t.fresh(w.shape[0] // groups))), "grouped convolution blocks")
            out = w.labels[0]
            if w.src is not None and w.shape[1] > 1:
                t.params[w.src[0]].group_input = x.labels[c]
    out = t.alg.resolve(out)
    if isinstance(bias, TensorVal):
        t.unify(bias.labels[0], out, "convolution bias")
    labels = list(x.labels[:c]) + [out] + [t.fixed(s, SPATIAL, "spatial position") for s in shape[c + 1:]]
    return t.tensor(labels, shape, is_weight(x, w, bias))


def spatial_op(t: Tracer, node, args, kwargs):
    """Pooling/upsampling over the last ``k`` axes: channels pass, spatial axes are fixed."""
    name = node.target._schema.name.split("::")[-1]
    m = re.search(r"(\d)d", name)
    k = int(m.group(1)) if m else 2
    x: TensorVal = args[0]
    shapes = out_shapes(node)
    for d in range(k):
        t.fix(x.labels[len(x.shape) - k + d], "spatial position (pooling/resampling)", SPATIAL)
    outs = []
    for shape in shapes:
        lead = list(x.labels[:len(shape) - k])
        outs.append(t.tensor(lead + [t.fixed(s, SPATIAL, "spatial position") for s in shape[len(shape) - k:]],
                             shape, x.weight))
    return outs[0] if not isinstance(node.meta["val"], (list, tuple)) else tuple(outs)


# ---------------------------------------------------------- normalization
def _norm_params(t: Tracer, params: list, labels: list, roles: list[str]) -> None:
    for p, role in zip(params, roles, strict=True):
        if isinstance(p, TensorVal):
            t.note_role(p, role)
            for pl, lab in zip(p.labels, labels, strict=True):
                t.unify(pl, lab, f"{role.replace('_', ' ')}")


def batch_norm(t: Tracer, node, args, kwargs):
    """batch_norm/instance_norm (all aten variants): channel axis 1 ties weight, bias, running stats."""
    b = bind(node, args, kwargs)
    x = b["input"]
    c = 1 if len(x.shape) > 1 else 0
    _norm_params(t, [b.get("weight"), b.get("bias"), b.get("running_mean"), b.get("running_var")],
                 [x.labels[c]], ["norm_weight", "norm_bias", "running_mean", "running_var"])
    shapes = out_shapes(node)
    if not isinstance(node.meta["val"], (list, tuple)):
        return t.tensor(x.labels, shapes[0], x.weight, x.src)  # a standardized weight keeps its axis map
    return tuple(t.tensor(x.labels if s == x.shape else ([x.labels[c]] if s == (x.shape[c],) else
                                                         [t.fresh(n) for n in s]), s, x.weight,
                          x.src if s == x.shape else None) for s in shapes)


def layer_norm(t: Tracer, node, args, kwargs):
    """layer_norm/rms_norm over the last axes: statistics are invariant to permuting those features."""
    b = bind(node, args, kwargs)
    x = b["input"]
    n = len(b["normalized_shape"])
    _norm_params(t, [b.get("weight"), b.get("bias")], x.labels[len(x.shape) - n:], ["norm_weight", "norm_bias"])
    shapes = out_shapes(node)
    if not isinstance(node.meta["val"], (list, tuple)):
        return t.tensor(x.labels, shapes[0], x.weight, x.src)  # a standardized weight keeps its axis map
    return tuple(t.tensor(x.labels if s == x.shape else x.labels[:len(s)], s, x.weight) for s in shapes)


def group_norm(t: Tracer, node, args, kwargs):
    """group_norm with ``G`` groups: channels become ``Blocks(G) x Within(C/G)``."""
    b = bind(node, args, kwargs)
    x = b["input"]
    groups = int(b.get("num_groups") or b.get("group"))
    ch = x.labels[1]
    t.unify(ch, ("p", (t.fresh(groups), t.fresh(x.shape[1] // groups))), "group norm groups")
    _norm_params(t, [b.get("weight"), b.get("bias")], [ch], ["norm_weight", "norm_bias"])
    shapes = out_shapes(node)
    if not isinstance(node.meta["val"], (list, tuple)):
        return t.tensor(x.labels, shapes[0], x.weight, x.src)  # a standardized weight keeps its axis map
    return tuple(t.tensor(x.labels if s == x.shape else [t.fixed(n, "constant", "group statistics") for n in s],
                          s, x.weight) for s in shapes)


def prelu(t: Tracer, node, args, kwargs) -> TensorVal:
    """prelu: a per-channel slope on axis 1 (or one shared slope)."""
    x, w = args[0], args[1]
    t.note_role(w, "scale")
    if w.shape and w.shape[0] > 1:
        t.unify(w.labels[0], x.labels[1 if len(x.shape) > 1 else 0], "prelu slope")
    return t.tensor(x.labels, out_shapes(node)[0], is_weight(x, w))


def glu(t: Tracer, node, args, kwargs) -> TensorVal:
    """glu: ``a * sigmoid(b)`` with ``a, b`` the halves of one axis, which must permute together."""
    x = args[0]
    dim = bind(node, args, kwargs)["dim"] % len(x.shape)
    half = x.shape[dim] // 2
    blocks = t.alg.split_cat(x.labels[dim], [half])
    labels = list(x.labels)
    if blocks is None or len(blocks) != 2:
        t.fix(x.labels[dim], "glu halves")
        labels[dim] = t.fixed(half, "constant", "glu output")
    else:
        t.unify(blocks[0], blocks[1], "glu halves")
        labels[dim] = blocks[0]
    return t.tensor(labels, out_shapes(node)[0], x.weight)


# --------------------------------------------------------------- embedding
def embedding(t: Tracer, node, args, kwargs) -> TensorVal:
    """Embedding ``W[V, D]``: rows are indexed by token ids (fixed); ``D`` is the output group."""
    b = bind(node, args, kwargs)
    w, idx = b["weight"], b["indices"]
    t.note_role(w, "embedding")
    t.note_direction(w, 0, 1)
    t.fix(w.labels[0], "embedding rows are indexed by token ids", "input")
    return t.tensor(list(idx.labels) + [w.labels[1]], out_shapes(node)[0], is_weight(w, idx))


# --------------------------------------------------------------- attention
def sdpa(t: Tracer, node, args, kwargs) -> TensorVal:
    """scaled_dot_product_attention: q/k share head and head-dim groups; v shares heads."""
    b = bind(node, args, kwargs)
    q, k, v, mask = b["query"], b["key"], b["value"], b.get("attn_mask")
    shape = out_shapes(node)[0]
    t.unify(q.labels[-1], k.labels[-1], "attention q.k contraction")
    t.unify(k.labels[-2], v.labels[-2], "attention keys and values")
    nb = len(shape) - 2
    if len(q.shape) >= 3 and len(k.shape) >= 3 and q.shape[-3] != k.shape[-3] and q.shape[-3] % k.shape[-3] == 0:
        # grouped-query attention: each k/v head serves a block of q heads
        kv = ("p", (k.labels[-3], t.fresh(q.shape[-3] // k.shape[-3])))
        t.unify(q.labels[-3], kv, "grouped-query heads")
        k = t.tensor(k.labels[:-3] + [q.labels[-3]] + k.labels[-2:], q.shape[:-2] + k.shape[-2:], k.weight)
        v = t.tensor(v.labels[:-3] + [q.labels[-3]] + v.labels[-2:], q.shape[:-2] + v.shape[-2:], v.weight)
    batch = _batch_unify(t, [(q, 2), (k, 2), (v, 2)], nb, shape[:nb])
    scores = batch + [q.labels[-2], k.labels[-2]]
    if isinstance(mask, TensorVal):
        off = len(scores) - len(mask.shape)
        for i, s in enumerate(mask.shape):
            if s != 1:
                t.unify(mask.labels[i], scores[i + off], "attention mask")
    return t.tensor(batch + [q.labels[-2], v.labels[-1]], shape, is_weight(q, k, v))


# --------------------------------------------------------------- recurrent
_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def recurrent(t: Tracer, node, args, kwargs):
    """lstm/gru/rnn: hidden units of each layer (and direction) permute jointly across gate blocks.

    ``W_ih[G*H, in]`` and ``W_hh[G*H, H]`` have rows ``FIXED(G) x H``; the gate factor is packed into
    edge vectors (like kernel offsets). Stacked final states ``h_n[L*D, B, H]`` hold several layers on
    one axis, so when several layers exist and ``h_n``/``c_n`` are used, their hidden groups are fixed.
    """
    name = node.target._schema.name.split("::")[-1]
    b = bind(node, args, kwargs)
    x, params = b["input"], [p for p in b["params"]]
    gates, layers = _GATES[name], int(b["num_layers"])
    dirs = 2 if b["bidirectional"] else 1
    per = 4 if b["has_biases"] else 2
    if len(params) != layers * dirs * per:  # projections (proj_size) and other variants
        return fallback(t, node, args, kwargs)
    feat = x.labels[-1]
    hidden = []
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            w_ih, w_hh, *biases = params[(layer * dirs + d) * per:(layer * dirs + d + 1) * per]
            h = t.fresh(w_hh.shape[1])
            gate = t.fixed(gates, SPATIAL, "gate block of a recurrent layer")
            rows = ("p", (gate, h))
            for w, cols in ((w_ih, feat), (w_hh, h)):
                t.note_role(w, "linear")
                t.note_direction(w, 1, 0)
                t.unify(w.labels[0], rows, "recurrent gate rows")
                t.unify(w.labels[1], cols, "recurrent input")
            for bias in biases:
                t.note_role(bias, "bias")
                t.unify(bias.labels[0], rows, "recurrent bias")
            outs.append(h)
        hidden.extend(outs)
        feat = t.alg.resolve(("c", tuple(outs))) if dirs == 2 else outs[0]
    state = hidden[0] if len(hidden) == 1 else None
    states_used = any(u.args[1] >= 1 for u in node.users)
    hx = b["hx"]
    for h0 in (hx if isinstance(hx, (list, tuple)) else [hx]):
        if not isinstance(h0, TensorVal):
            continue
        if state is not None:
            t.unify(h0.labels[-1], state, "initial recurrent state")
        elif t.param_only(_arg_node(node, h0, t)) or t.alg.is_fixed(h0.labels[-1]):
            states_used = True  # a learned or input-given initial state per layer: cannot stay permutable
    if state is None and states_used:
        for h in hidden:
            t.fix(h, "stacked per-layer recurrent states are used")
    shapes = out_shapes(node)
    batch_first = bool(b["batch_first"]) and len(x.shape) == 3
    batch = [x.labels[0 if batch_first else 1]] if len(x.shape) == 3 else []
    outs = [t.tensor(list(x.labels[:-1]) + [feat], shapes[0], x.weight)]
    for shape in shapes[1:]:
        last = state if state is not None else t.fixed(shape[-1], "constant", "stacked recurrent state")
        outs.append(t.tensor([t.fixed(shape[0], "constant", "layer index")] + batch + [last], shape, x.weight))
    return tuple(outs)


def _arg_node(node, val, t: Tracer):
    for n in node.all_input_nodes:
        if t.values.get(n.name) is val:
            return n
    return node


LAYER_RULES: dict[str, Any] = {
    "linear": linear, "mm": matmul, "bmm": matmul, "matmul": matmul, "mv": matmul, "dot": matmul,
    "addmm": addmm, "baddbmm": addmm, "addmv": addmm, "einsum": einsum,
    "conv1d": convolution, "conv2d": convolution, "conv3d": convolution, "convolution": convolution,
    "_convolution": convolution, "conv_transpose1d": convolution, "conv_transpose2d": convolution,
    "conv_transpose3d": convolution,
    "batch_norm": batch_norm, "_native_batch_norm_legit_no_training": batch_norm,
    "_native_batch_norm_legit_functional": batch_norm, "_native_batch_norm_legit": batch_norm,
    "native_batch_norm": batch_norm, "instance_norm": batch_norm, "layer_norm": layer_norm,
    "native_layer_norm": layer_norm, "rms_norm": layer_norm, "group_norm": group_norm,
    "native_group_norm": group_norm, "prelu": prelu, "_prelu_kernel": prelu, "glu": glu,
    "embedding": embedding, "scaled_dot_product_attention": sdpa,
    "_grouped_mm": grouped_mm, "grouped_mm_fallback": grouped_mm,
    "_weight_norm": weight_norm, "_weight_norm_interface": weight_norm,
    "im2col": im2col, "col2im": col2im, "unfold": unfold_windows,
    "lstm": recurrent, "gru": recurrent, "rnn_tanh": recurrent, "rnn_relu": recurrent,
}
for _k in """max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices
avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
_adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d
upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d _upsample_nearest_exact2d
_upsample_nearest_exact3d upsample_linear1d upsample_bilinear2d upsample_bicubic2d upsample_trilinear3d
_upsample_bilinear2d_aa _upsample_bicubic2d_aa""".split():
    LAYER_RULES[_k] = spatial_op
