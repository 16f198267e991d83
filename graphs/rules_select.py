"""Symmetry rules for slicing, joining, indexing, padding and reductions (helpers: :mod:`graphs.rule_helpers`)."""

from __future__ import annotations

from graphs.labels import CONSTANT, UNIT
from graphs.rule_helpers import bind, is_weight, out_shapes
from graphs.tracer import TensorVal, Tracer

__all__ = ["argreduce", "cat", "fix_dims", "gather", "index_select", "index_tensor", "pad", "reduction", "select",
           "slice_", "softmax", "split", "stack"]


# --------------------------------------------------------- slicing / joining
def slice_(t: Tracer, node, args, kwargs) -> TensorVal:
    """slice/narrow: a whole block of a concatenation keeps its label; else the axis is split into blocks."""
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    shape = out_shapes(node)[0]
    dim = b["dim"] % len(x.shape)
    n = x.shape[dim]
    if "length" in b:  # narrow
        start, stop, step = b["start"], b["start"] + b["length"], 1
    else:
        start, stop, step = b["start"] or 0, b["end"], b["step"] or 1
        stop = n if stop is None or stop > n else stop
    start, stop = start % n if start < 0 else min(start, n), stop % n if stop < 0 else stop
    labels = list(x.labels)
    if step == 1 and (start, stop) == (0, n):
        return t.tensor(labels, shape, x.weight, x.src)
    lab = t.alg.blocks_at(x.labels[dim], start, stop) if step == 1 else None
    if lab is None:
        t.fix(x.labels[dim], "strided or misaligned slice")
        lab = t.fixed(shape[dim], CONSTANT, "slice output")
    labels[dim] = lab
    return t.tensor(labels, shape, x.weight)


def split(t: Tracer, node, args, kwargs) -> tuple:
    """split/split_with_sizes/chunk/tensor_split: consecutive blocks along one axis."""
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    shapes = out_shapes(node)
    dim = b["dim"] % len(x.shape)
    sizes = [s[dim] for s in shapes]
    cuts = [sum(sizes[:k]) for k in range(1, len(sizes))]
    blocks = t.alg.split_cat(x.labels[dim], cuts)
    if blocks is None:
        t.fix(x.labels[dim], "split of a structured axis")
        blocks = [t.fixed(s, CONSTANT, "split output") for s in sizes]
    outs = []
    for shape, blk in zip(shapes, blocks, strict=True):
        labels = list(x.labels)
        labels[dim] = blk
        outs.append(t.tensor(labels, shape, x.weight))
    return tuple(outs)


def select(t: Tracer, node, args, kwargs) -> TensorVal:
    """select/unbind: picking units by index fixes the axis."""
    x: TensorVal = args[0]
    dim = bind(node, args, kwargs)["dim"] % len(x.shape)
    t.fix(x.labels[dim], "indexed by a constant position (select)")
    labels = x.labels[:dim] + x.labels[dim + 1:]
    shapes = out_shapes(node)
    outs = [t.tensor(labels, s, x.weight) for s in shapes]
    return outs[0] if not isinstance(node.meta["val"], (list, tuple)) else tuple(outs)


def cat(t: Tracer, node, args, kwargs) -> TensorVal:
    """cat: a concatenation label along ``dim``; the other axes unify."""
    b = bind(node, args, kwargs)
    shape = out_shapes(node)[0]
    ins = [v for v in b["tensors"] if isinstance(v, TensorVal) and v.shape != (0,)]
    dim = b["dim"] % len(shape)
    labels = _joined_labels(t, ins, skip=dim, why="concatenated tensors")
    labels[dim] = t.alg.resolve(("c", tuple(v.labels[dim] for v in ins)))
    return t.tensor(labels, shape, is_weight(ins))


def stack(t: Tracer, node, args, kwargs) -> TensorVal:
    """stack: a new fixed axis (which input) and unified other axes."""
    b = bind(node, args, kwargs)
    shape = out_shapes(node)[0]
    ins = [v for v in b["tensors"] if isinstance(v, TensorVal)]
    dim = b["dim"] % len(shape)
    labels = _joined_labels(t, ins, skip=None, why="stacked tensors")
    labels.insert(dim, t.fixed(len(ins), CONSTANT, "stack index"))
    return t.tensor(labels, shape, is_weight(ins))


def _joined_labels(t: Tracer, ins: list[TensorVal], skip: int | None, why: str) -> list:
    """Unify the axes (but ``skip``) of tensors joined by cat/stack; return the joined labels.

    A size-1 axis of a weight-derived operand (a class token ``[1, 1, D]``, whose batch axis is 1 when the
    batch is 1) is not tied to the others: it holds nothing to permute, and tying it would make a batch axis
    a parameter axis. The labels come from the first operand computed from the input, if any.
    """
    base = next((v for v in ins if not v.weight), ins[0])
    labels = list(base.labels)
    for v in ins:
        if v is base:
            continue
        for k, s in enumerate(v.shape):
            if k != skip and not (s == 1 and (v.weight or base.weight)):
                t.unify(labels[k], v.labels[k], why)
    return labels


def fix_dims(t: Tracer, node, args, kwargs) -> TensorVal:
    """flip/roll/cumsum/sort-like ops: the named axes depend on order, so they are fixed."""
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    dims = b.get("dims", b.get("dim"))
    dims = list(range(len(x.shape))) if dims is None else (dims if isinstance(dims, (list, tuple)) else [dims])
    for d in dims:
        t.fix(x.labels[d % len(x.shape)], "order-dependent op")
    shapes = out_shapes(node)
    outs = [t.tensor(x.labels if s == x.shape else [t.fixed(n, CONSTANT, "output") for n in s], s, x.weight)
            for s in shapes]
    return outs[0] if not isinstance(node.meta["val"], (list, tuple)) else tuple(outs)


def index_select(t: Tracer, node, args, kwargs) -> TensorVal:
    """index_select: the indexed axis is fixed; the index supplies the new axis."""
    b = bind(node, args, kwargs)
    x, idx = b["self"], b["index"]
    dim = b["dim"] % len(x.shape)
    t.fix(x.labels[dim], "indexed by a tensor of positions")
    labels = list(x.labels)
    labels[dim] = idx.labels[0] if idx.shape and idx.shape[0] != 1 else UNIT
    return t.tensor(labels, out_shapes(node)[0], is_weight(x, idx))


def index_tensor(t: Tracer, node, args, kwargs) -> TensorVal:
    """Advanced indexing ``x[..., idx, ...]``: indexed axes are fixed, the index axes come in."""
    b = bind(node, args, kwargs)
    x, indices = b["self"], list(b["indices"])
    shape = out_shapes(node)[0]
    used = [k for k, ix in enumerate(indices) if ix is not None]
    for k in used:
        t.fix(x.labels[k], "indexed by a tensor of positions")
    contiguous = used == list(range(used[0], used[-1] + 1))
    rest = [x.labels[k] for k in range(len(x.shape)) if k not in used]
    nidx = len(shape) - len(rest)
    idx_shape = shape[used[0]:used[0] + nidx] if contiguous else shape[:nidx]
    idx_labels = [t.fixed(s, CONSTANT, "index") for s in idx_shape]
    for ix in indices:
        if isinstance(ix, TensorVal):
            off = nidx - len(ix.shape)
            for i, s in enumerate(ix.shape):
                if s != 1 and i + off >= 0:
                    t.unify(idx_labels[i + off], ix.labels[i], "index tensors")
    src = None
    if contiguous:
        kept = list(range(used[0])) + [None] * nidx + list(range(used[-1] + 1, len(x.shape)))
        labels = x.labels[:used[0]] + idx_labels + [x.labels[k] for k in range(used[-1] + 1, len(x.shape))]
        if x.src is not None:  # rows of a stacked weight picked by index keep the other axes' map (W[ids])
            src = (x.src[0], tuple(None if k is None else x.src[1][k] for k in kept))
    else:
        labels = idx_labels + rest
    return t.tensor(labels, shape, is_weight(x, *[i for i in indices if isinstance(i, TensorVal)]), src)


def gather(t: Tracer, node, args, kwargs) -> TensorVal:
    """gather: output has the index's shape; the gathered axis is fixed."""
    b = bind(node, args, kwargs)
    x, idx = b["self"], b["index"]
    dim = b["dim"] % len(x.shape)
    t.fix(x.labels[dim], "gathered by a tensor of positions")
    for k in range(len(x.shape)):
        if k != dim and x.shape[k] == idx.shape[k] and x.shape[k] > 1:
            t.unify(x.labels[k], idx.labels[k], "gather")
    return t.tensor(idx.labels, out_shapes(node)[0], is_weight(x, idx))


def pad(t: Tracer, node, args, kwargs) -> TensorVal:
    """constant/reflection/replication pad: padded axes are fixed and get new fixed labels."""
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    p = list(b.get("pad", b.get("padding")) or [])
    labels = list(x.labels)
    for k in range(len(p) // 2):
        d = len(x.shape) - 1 - k
        if p[2 * k] or p[2 * k + 1]:
            kinds = {kk for a in t.alg.atoms(x.labels[d]) for kk in t.alg.atom_info(a)[2]}
            t.fix(x.labels[d], "padded axis")
            shape_d = out_shapes(node)[0][d]
            labels[d] = t.fixed(shape_d, "spatial" if "spatial" in kinds else CONSTANT, "padded axis")
    return t.tensor(labels, out_shapes(node)[0], x.weight)


# --------------------------------------------------------------- reductions
def reduction(t: Tracer, node, args, kwargs):
    """mean/sum/amax/var/...: reduced axes vanish (or become unit axes with keepdim)."""
    b = bind(node, args, kwargs)
    x: TensorVal = b["self"] if "self" in b else args[0]
    n = len(x.shape)
    dims = b.get("dim")
    if dims is None or dims == []:
        dims = list(range(n))
    dims = {d % n for d in (dims if isinstance(dims, (list, tuple)) else [dims])} if n else set()
    keep = bool(b.get("keepdim"))
    labels = [UNIT if k in dims else x.labels[k] for k in range(n)] if keep else [
        x.labels[k] for k in range(n) if k not in dims]
    shapes = out_shapes(node)
    if isinstance(node.meta["val"], (list, tuple)):  # max.dim/min.dim: (values, indices)
        if any(u.args[1] == 1 for u in node.users):  # positions are used: order matters
            for d in dims:
                t.fix(x.labels[d], "arg-max/min position is used")
        return tuple(t.tensor(labels, s, x.weight) for s in shapes)
    return t.tensor(labels, shapes[0], x.weight)


def argreduce(t: Tracer, node, args, kwargs) -> TensorVal:
    """argmax/argmin: the result is a position along the reduced axis, so that axis is fixed."""
    x: TensorVal = args[0]
    b = bind(node, args, kwargs)
    n = len(x.shape)
    dim = b.get("dim")
    dims = range(n) if dim is None else [dim % n]
    for d in dims:
        t.fix(x.labels[d], "arg-max/min position")
    shape = out_shapes(node)[0]
    labels = [] if dim is None else ([UNIT if k == dim % n else x.labels[k] for k in range(n)] if b.get("keepdim")
                                     else [x.labels[k] for k in range(n) if k != dim % n])
    return t.tensor(labels, shape, x.weight)


def softmax(t: Tracer, node, args, kwargs) -> TensorVal:
    """softmax/log_softmax: equivariant along the normalized axis, so labels pass through."""
    x: TensorVal = args[0]
    return t.tensor(x.labels, out_shapes(node)[0], x.weight)


