"""``Layout``: the data-free description of one architecture's parameters and symmetries.

A Layout lists every float parameter and persistent float buffer in ``state_dict`` order, with one
*axis label* per tensor axis. Labels are small JSON trees over group ids:

* ``["a", g]``: group ``g`` (see :class:`GroupSpec`: its size, whether it is fixed, and why);
* ``["p", [l1, l2, ...]]``: a row-major product (channels x positions, heads x head_dim);
* ``["c", [l1, l2, ...]]``: a concatenation of blocks;
* ``["u"]``: a size-1 axis.

Permuting every non-fixed group (any permutation each) and applying the induced permutation to
every axis of every parameter leaves the network's function unchanged. The Layout is hashable
through :attr:`Layout.fingerprint` (a digest of its structure, not of its values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from graphs.compile import compile_layout
from graphs.labels import SPATIAL
from graphs.param_graph import NodeType

__all__ = ["GroupSpec", "IntBufferSpec", "Layout", "ParamSpec", "build_layout", "FORMAT_VERSION"]

FORMAT_VERSION = 1

_SHARED_CACHES: dict[str, dict] = {}  # fingerprint -> compiled structure, shared by unpickled layouts


@dataclass(frozen=True)
class GroupSpec:
    """One neuron group: ``size`` units permuted together.

    Attributes:
        id: Index of the group in :attr:`Layout.groups`.
        size: Number of units.
        fixed: Only the identity is allowed (touches inputs/outputs, spatial, or an op without a rule).
        kinds: Origins of the group: ``hidden``, ``input``, ``output``, ``spatial``, ``constant``, ``opaque``.
        reasons: Why the group is fixed (first few reasons, human-readable).
    """

    id: int
    size: int
    fixed: bool
    kinds: tuple[str, ...]
    reasons: tuple[str, ...] = ()

    @property
    def spatial(self) -> bool:
        """Fixed spatial groups (kernel offsets, positions) become edge-vector slots, not nodes."""
        return self.fixed and SPATIAL in self.kinds


@dataclass(frozen=True)
class ParamSpec:
    """One float parameter or persistent float buffer.

    Attributes:
        name: ``state_dict`` key.
        shape: Tensor shape.
        dtype: Dtype name, e.g. ``float32``.
        offset: Start of this tensor in the flat parameter vector.
        axes: One label (JSON tree over group ids) per axis.
        role: What the tensor does: ``linear``, ``conv``, ``embedding``, ``bias``, ``norm_weight``,
            ``norm_bias``, ``running_mean``, ``running_var`` or ``other``.
        direction: ``(in_axis, out_axis)`` of a weight (edge source and target), when known.
        is_buffer: A buffer rather than a parameter.
        aliases: Other ``state_dict`` keys bound to this same tensor (tied weights).
        group_input: For a grouped convolution weight ``W[out, in/g, ...]``: the label of the full input
            channel axis (``blocks x within``); input channel of element ``(o, i)`` is
            ``block(o) * in/g + i``. None otherwise.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    axes: tuple[Any, ...]
    role: str = "other"
    direction: tuple[int, int] | None = None
    is_buffer: bool = False
    aliases: tuple[str, ...] = ()
    group_input: Any = None

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class IntBufferSpec:
    """An integer buffer (e.g. BatchNorm ``num_batches_tracked``): copied exactly, never permuted."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int


@dataclass(frozen=True, eq=False)
class Layout:
    """Architecture description: parameters, their axis groups, and the groups' symmetry.

    Attributes:
        params: Float parameters/buffers in ``state_dict`` order; their concatenation is the flat vector.
        groups: Neuron groups referenced by the axis labels.
        int_buffers: Integer buffers, stored beside the flat vector.
        float_dtype: Dtype of the flat vector (the widest float dtype among the parameters).
        name: The traced module's class name (informative; not part of the fingerprint).
    """

    params: tuple[ParamSpec, ...]
    groups: tuple[GroupSpec, ...]
    int_buffers: tuple[IntBufferSpec, ...] = ()
    float_dtype: str = "float32"
    name: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------- properties
    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector."""
        return sum(p.numel for p in self.params)

    @property
    def num_int(self) -> int:
        """Number of integer-buffer elements."""
        n = 0
        for b in self.int_buffers:
            k = 1
            for s in b.shape:
                k *= s
            n += k
        return n

    @cached_property
    def fingerprint(self) -> str:
        """Stable digest of the structure (names, shapes, dtypes, labels, groups)."""
        d = self.to_dict()
        d.pop("name", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def param(self, name: str) -> ParamSpec:
        """The ParamSpec of ``name`` (or of a tied alias of it)."""
        for p in self.params:
            if p.name == name or name in p.aliases:
                return p
        raise KeyError(f"no parameter {name!r} in this layout; known: {[p.name for p in self.params][:8]}...")

    def permutable_groups(self) -> list[GroupSpec]:
        """Groups that admit non-identity permutations (size > 1, not fixed)."""
        return [g for g in self.groups if not g.fixed and g.size > 1]

    def group_sizes(self) -> list[int]:
        """Sorted sizes of the permutable groups: the symmetry group is the product of their S_n."""
        return sorted(g.size for g in self.permutable_groups())

    def num_permutable_neurons(self) -> int:
        """Number of graph neurons that some symmetry moves."""
        c = compile_layout(self)
        return int(((c.node_type == NodeType.HIDDEN) & c.node_movable).sum())

    def __repr__(self) -> str:
        return (f"Layout({self.name or '?'}#{self.fingerprint}, params={len(self.params)}, "
                f"num_params={self.num_params}, groups={self.group_sizes()})")

    def __getstate__(self) -> dict:
        """Pickle without the compiled-structure cache (workers rebuild or share it by fingerprint)."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        shared = _SHARED_CACHES.setdefault(state.get("fingerprint") or self.fingerprint, {})
        object.__setattr__(self, "_cache", shared)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # -------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (see :meth:`from_dict`)."""
        return {
            "format": "weightgraph-layout", "version": FORMAT_VERSION, "name": self.name,
            "float_dtype": self.float_dtype,
            "groups": [[g.size, g.fixed, list(g.kinds), list(g.reasons)] for g in self.groups],
            "params": [{"name": p.name, "shape": list(p.shape), "dtype": p.dtype, "axes": _to_json(p.axes),
                        "role": p.role, "direction": list(p.direction) if p.direction else None,
                        "is_buffer": p.is_buffer, "aliases": list(p.aliases),
                        "group_input": _to_json(p.group_input)} for p in self.params],
            "int_buffers": [{"name": b.name, "shape": list(b.shape), "dtype": b.dtype} for b in self.int_buffers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        """Rebuild a Layout from :meth:`to_dict` output (validates the format tag and version)."""
        if d.get("format") != "weightgraph-layout":
            raise ValueError("not a weightgraph layout (missing format tag 'weightgraph-layout')")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"layout format version {d.get('version')} is not supported (this weightgraph "
                             f"reads version {FORMAT_VERSION}); re-trace the model with this version")
        groups = tuple(GroupSpec(i, int(s), bool(f), tuple(k), tuple(r)) for i, (s, f, k, r) in enumerate(d["groups"]))
        params, off = [], 0
        for p in d["params"]:
            spec = ParamSpec(p["name"], tuple(p["shape"]), p["dtype"], off, _from_json(p["axes"]), p["role"],
                             tuple(p["direction"]) if p["direction"] else None, p["is_buffer"], tuple(p["aliases"]),
                             _from_json(p.get("group_input")))
            params.append(spec)
            off += spec.numel
        ints, off = [], 0
        for b in d["int_buffers"]:
            spec = IntBufferSpec(b["name"], tuple(b["shape"]), b["dtype"], off)
            ints.append(spec)
            off += max(1, _numel(spec.shape))
        return cls(tuple(params), groups, tuple(ints), d["float_dtype"], d.get("name", ""))

    def to_json(self) -> str:
        """Compact JSON string."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> Layout:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(s))


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _to_json(obj):
    if obj is None:
        return None
    return [_to_json(o) for o in obj] if isinstance(obj, (list, tuple)) else obj


def _from_json(obj):
    return tuple(_from_json(o) for o in obj) if isinstance(obj, list) else obj


# --------------------------------------------------------------- building
def build_layout(tracer, model: torch.nn.Module) -> Layout:
    """Turn a finished :class:`graphs.trace.Tracer` into a Layout (groups renumbered in first-use order)."""
    alg = tracer.alg
    state = model.state_dict(keep_vars=True)
    canon = tracer.canonical or canonical_names(model)
    aliases_of: dict[str, list[str]] = {}
    for a, c in canon.items():
        if a != c:
            aliases_of.setdefault(c, []).append(a)
    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    gid: dict[int, int] = {}
    groups: list[GroupSpec] = []

    def relabel(label) -> tuple:
        label = alg.resolve(label)
        if label[0] == "u":
            return ("u",)
        if label[0] == "a":
            root = label[1]
            if root not in gid:
                size, fixed, kinds, reasons = alg.atom_info(root)
                gid[root] = len(groups)
                kinds = kinds - {"hidden"} if fixed and len(kinds) > 1 else kinds
                groups.append(GroupSpec(len(groups), size, fixed, tuple(sorted(kinds)), tuple(reasons[:3])))
            return ("a", gid[root])
        return (label[0], tuple(relabel(x) for x in label[1]))

    for name, rec in tracer.params.items():
        if name in state:
            _slot_fixed_axes(alg, rec.labels, tuple(state[name].shape))
    params, ints, off, ioff = [], [], 0, 0
    dtypes = []
    for name, tensor in state.items():
        if canon.get(name, name) != name:
            continue  # a tied alias: recorded on its canonical parameter
        aliases = tuple(aliases_of.get(name, ()))
        dtype = str(tensor.dtype).replace("torch.", "")
        shape = tuple(int(s) for s in tensor.shape)
        if not tensor.is_floating_point():
            ints.append(IntBufferSpec(name, shape, dtype, ioff))
            ioff += max(1, _numel(shape))
            continue
        rec = tracer.params.get(name)
        if rec is None:  # present in the state_dict but never used by the traced forward
            labels = [alg.fixed_atom(s, "constant", f"'{name}' is not used by the traced forward") for s in shape]
            role, direction, is_buffer = "other", None, name not in param_names
        else:
            labels, direction, is_buffer = rec.labels, rec.direction, rec.is_buffer
            role = rec.roles[0] if rec.roles else "other"
        axes = tuple(("u",) if n == 1 and alg.is_singleton(lab) else relabel(lab)
                     for lab, n in zip(labels, shape, strict=True))
        group_input = relabel(rec.group_input) if rec is not None and rec.group_input is not None else None
        params.append(ParamSpec(name, shape, dtype, off, axes, role, direction, is_buffer, aliases, group_input))
        dtypes.append(tensor.dtype)
        off += _numel(shape)
    wide = torch.float64 if torch.float64 in dtypes else torch.float32
    return Layout(tuple(params), tuple(groups), tuple(ints), str(wide).replace("torch.", ""), type(model).__name__)


def _slot_fixed_axes(alg, labels: list, shape: tuple[int, ...]) -> None:
    """Make the fixed axes of a parameter with more than two neuron axes edge-vector slots.

    A graph edge joins two neurons, so a parameter can have at most two neuron axes. Stacked weights have
    a third axis that no symmetry moves: the expert index of ``W[E, out, in]`` (tokens are routed by the
    data), a layer or gate index. Such a fixed axis is packed into the edge vector, like a kernel offset.
    Leading axes go first; a parameter with more than two *permutable* axes is left for the graph
    compiler to refuse.
    """
    node_axes = [i for i, (lab, n) in enumerate(zip(labels, shape, strict=True))
                 if not (n == 1 and alg.is_singleton(lab)) and _has_neurons(alg, lab)]
    extra = len(node_axes) - 2
    for i in node_axes:
        if extra <= 0:
            return
        if alg.is_fixed(labels[i]):
            alg.mark(labels[i], SPATIAL)
            extra -= 1


def _has_neurons(alg, label) -> bool:
    """True when some atom of ``label`` is a neuron space (anything but a fixed spatial slot)."""
    for a in alg.atoms(label):
        _size, fixed, kinds, _r = alg.atom_info(a)
        if not (fixed and SPATIAL in kinds):
            return True
    return False


def canonical_names(model: torch.nn.Module) -> dict[str, str]:
    """Map every state_dict key to the first key bound to the same tensor (tied weights)."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = id(t)
        out[name] = first.setdefault(key, name)
    return out
