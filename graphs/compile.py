"""Compile a :class:`~graphs.Layout` into a fixed graph structure and gather indices.

Everything here depends on the Layout alone, so it is computed once and cached on the Layout;
converting a network is then one gather of its flat parameter vector (see :mod:`graphs.convert`).

Nodes:
  * one *neuron* node per unit of every **neuron space**: the node part of a parameter axis label
    (fixed spatial factors, i.e. kernel offsets and flattened positions, are edge-vector slots, not
    nodes; concatenations contribute their blocks' nodes). Axes with the same label share nodes, so
    a residual stream is one set of neurons.
  * one *parameter* node per parameter tensor that has fewer than two neuron axes (biases, norm
    scales, running statistics, scalars): its elements are edges from it to the neurons it acts on
    (or its own features when it has no neuron axis).

Edges: an element of a weight with two neuron axes is an edge from its input neuron to its output
neuron; elements that differ only in fixed spatial slots share an edge, as a vector (packed kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from graphs.errors import UnsupportedNetworkError
from graphs.param_graph import EDGE_TYPES, NodeType

if TYPE_CHECKING:  # annotations only: graphs.layout imports this module
    from graphs.layout import Layout

__all__ = ["Compiled", "compile_layout", "axis_maps"]


@dataclass(frozen=True)
class Compiled:
    """The structure shared by every graph of one Layout.

    Attributes:
        edge_index: ``[2, E]`` source/target node of every edge.
        edge_type: ``[E]`` index into :data:`graphs.param_graph.EDGE_TYPES`.
        edge_param: ``[E]`` index of the parameter an edge comes from.
        node_type: ``[N]`` :class:`graphs.param_graph.NodeType` values.
        node_pos: ``[N]`` position of fixed coordinates (-1 for a neuron no symmetry can tell apart).
        node_movable: ``[N]`` bool, some symmetry moves this neuron.
        node_space: ``[N]`` index of the neuron space (or parameter node) of each node.
        edge_gather: ``[E * K]`` index into ``cat(vec, [0])`` filling ``edge_attr``.
        node_gather: ``[N * K]`` index into ``cat(vec, [0])`` filling ``x``.
        inverse: ``[P]`` index into ``cat(edge_attr.flatten(), x.flatten())`` giving back ``vec``.
        width: ``K``, the edge/node feature width (largest packed vector).
        spaces: Label (JSON tree) of every neuron space, in node order; ``("dup", label, k)`` is the
            k-th extra copy of a space that one concatenated axis holds several times (e.g. the value
            and gate halves of a GLU projection, or q and k blocks of a fused qkv projection).
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_param: torch.Tensor
    node_type: torch.Tensor
    node_pos: torch.Tensor
    node_movable: torch.Tensor
    node_space: torch.Tensor
    edge_gather: torch.Tensor
    node_gather: torch.Tensor
    inverse: torch.Tensor
    width: int
    spaces: tuple

    @property
    def edge_mask(self) -> torch.Tensor:
        """``[E, K]`` bool: which edge slots hold a parameter (False: zero padding)."""
        got = self.__dict__.get("_edge_mask")
        if got is None:
            got = (self.edge_gather != self.inverse.numel()).view(-1, self.width)
            object.__setattr__(self, "_edge_mask", got)
        return got

    @property
    def x_mask(self) -> torch.Tensor:
        """``[N, K]`` bool: which node-feature slots hold a parameter."""
        got = self.__dict__.get("_x_mask")
        if got is None:
            got = (self.node_gather != self.inverse.numel()).view(-1, self.width)
            object.__setattr__(self, "_x_mask", got)
        return got

    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_type.numel())


def compile_layout(layout: Layout) -> Compiled:
    """Return the (cached) compiled structure of ``layout``."""
    got = layout._cache.get("compiled")
    if got is None:
        got = _Builder(layout).build()
        layout._cache["compiled"] = got
    return got


def axis_maps(layout: Layout, label) -> tuple[list, np.ndarray, np.ndarray, int]:
    """Decompose an axis label into per-index (node-space key, unit, vector slot).

    Returns:
        ``(keys, units, slots, vlen)``: ``keys[i]`` is the neuron-space label of index ``i`` (None when
        the index has no neuron part), ``units[i]`` the unit inside that space, ``slots[i]`` the
        position in the axis's vector part, ``vlen`` the vector length of the axis.
    """
    groups = layout.groups
    tag = label[0]
    if tag == "u":
        return [None], np.zeros(1, np.int64), np.zeros(1, np.int64), 1
    if tag == "a":
        g = groups[label[1]]
        n = g.size
        if g.spatial:
            return [None] * n, np.zeros(n, np.int64), np.arange(n), n
        return [label] * n, np.arange(n), np.zeros(n, np.int64), 1
    if tag == "c":
        keys, units, slots, vlen = [], [], [], 1
        seen: dict = {}
        for blk in label[1]:
            k, u, s, v = axis_maps(layout, blk)
            first = next((x for x in k if x is not None), None)
            if first is not None:  # a block repeating an earlier block's neurons gets its own copy
                rep = seen.get(first, 0)
                seen[first] = rep + 1
                if rep:
                    k = [None if x is None else ("dup", x, rep) for x in k]
            keys += k
            units.append(u)
            slots.append(s)
            vlen = max(vlen, v)
        return keys, np.concatenate(units), np.concatenate(slots), vlen
    factors = list(label[1])
    is_vec = [f[0] == "a" and groups[f[1]].spatial for f in factors]
    sizes = [_size(layout, f) for f in factors]
    node_f = [f for f, v in zip(factors, is_vec, strict=True) if not v]
    key = None if not node_f else (node_f[0] if len(node_f) == 1 else ("p", tuple(node_f)))
    grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    unit = np.zeros(grids[0].shape, np.int64)
    slot = np.zeros(grids[0].shape, np.int64)
    vlen = 1
    for gi, s, v in zip(grids, sizes, is_vec, strict=True):
        if v:
            slot = slot * s + gi
            vlen *= s
        else:
            unit = unit * s + gi
    n = unit.size
    return [key] * n, unit.reshape(-1), slot.reshape(-1), vlen


def _size(layout: Layout, label) -> int:
    if label[0] == "u":
        return 1
    if label[0] == "a":
        return layout.groups[label[1]].size
    sizes = [_size(layout, x) for x in label[1]]
    return int(np.prod(sizes)) if label[0] == "p" else int(sum(sizes))


def _leaves(layout: Layout, label) -> list[tuple[int, int]]:
    """For every unit of a (node-part) label, nothing but its fixed coordinates, as a tuple."""
    if label[0] == "u":
        return [()]
    if label[0] == "a":
        g = layout.groups[label[1]]
        return [((g.id, i),) if g.fixed else () for i in range(g.size)]
    parts = [_leaves(layout, x) for x in label[1]]
    if label[0] == "c":
        return [((-1 - b, 0),) + u for b, p in enumerate(parts) for u in p]
    out = [()]
    for p in parts:
        out = [a + b for a in out for b in p]
    return out


class _Builder:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.space_index: dict = {}
        self.spaces: list = []
        self.space_offset: list[int] = []
        self.n_nodes = 0
        self.node_type: list[np.ndarray] = []
        self.node_pos: list[np.ndarray] = []
        self.node_movable: list[np.ndarray] = []
        self.node_space: list[np.ndarray] = []

    def space(self, key) -> int:
        """Node offset of neuron space ``key``, creating its nodes on first use."""
        if key in self.space_index:
            return self.space_offset[self.space_index[key]]
        groups = self.layout.groups
        label = key[1] if key[0] == "dup" else key
        atoms = _atoms(label)
        fixed = all(groups[a].fixed for a in atoms)
        kinds = {k for a in atoms for k in groups[a].kinds}
        n = _size(self.layout, label)
        if fixed:
            kind = NodeType.INPUT if "input" in kinds else NodeType.OUTPUT if "output" in kinds else NodeType.FIXED
            pos = np.arange(n)
        else:
            kind = NodeType.HIDDEN
            coords = _leaves(self.layout, label)
            codes: dict = {}
            pos = np.array([-1 if not c else codes.setdefault(c, len(codes)) for c in coords], np.int64)
        movable = not fixed and any(not groups[a].fixed and groups[a].size > 1 for a in atoms)
        idx = len(self.spaces)
        self.space_index[key] = idx
        self.spaces.append(key)
        self.space_offset.append(self.n_nodes)
        self.node_type.append(np.full(n, int(kind)))
        self.node_pos.append(pos)
        self.node_movable.append(np.full(n, movable))
        self.node_space.append(np.full(n, idx))
        self.n_nodes += n
        return self.space_offset[idx]

    def param_node(self, p_index: int) -> int:
        """A new parameter node for parameter ``p_index``."""
        node = self.n_nodes
        self.node_type.append(np.array([int(NodeType.PARAM)]))
        self.node_pos.append(np.array([p_index]))
        self.node_movable.append(np.array([False]))
        self.node_space.append(np.array([-1 - p_index]))
        self.n_nodes += 1
        return node

    def build(self) -> Compiled:
        layout = self.layout
        P = layout.num_params
        per_param = []  # (p_index, kind, src, dst, slot, elements, is_matrix); kind 0: edges, 1: node features
        width = 1
        for pi, p in enumerate(layout.params):
            if p.numel == 0:
                continue
            nids, slots, vlens = [], [], []
            for ax, lab in enumerate(p.axes):
                if ax == 1 and p.group_input is not None:  # replaced below by the input-channel map
                    lab = ("u",) if p.shape[1] == 1 else ("c", tuple(("u",) for _ in range(p.shape[1])))
                keys, units, sl, vlen = axis_maps(layout, lab)
                offs = np.array([-1 if k is None else self.space(k) for k in keys], np.int64)
                nids.append(np.where(offs >= 0, offs + units, -1))
                slots.append(sl)
                vlens.append(vlen)
            nd = len(p.shape)
            grids = _broadcast([np.asarray(a) for a in nids]) if nd else []
            if p.group_input is not None:  # grouped conv: input channel = block(out) * in/g + i
                keys, units, _sl, _v = axis_maps(layout, p.group_input)
                in_nid = np.array([-1 if k is None else self.space(k) for k in keys], np.int64) + units
                per_in = p.shape[1]
                per_out = p.shape[0] // (len(keys) // per_in)
                unit = (np.arange(p.shape[0])[:, None] // per_out) * per_in + np.arange(per_in)[None, :]
                grids[1] = np.broadcast_to(in_nid[unit].reshape(unit.shape + (1,) * (nd - 2)), grids[0].shape)
                nids[1] = in_nid
            slot = np.zeros(p.shape, np.int64) if nd else np.zeros((), np.int64)
            for ax in range(nd):
                shape = [1] * nd
                shape[ax] = p.shape[ax]
                slot = slot * vlens[ax] + slots[ax].reshape(shape)
            k = int(np.prod(vlens)) if vlens else 1
            width = max(width, k)
            node_axes = [ax for ax in range(nd) if (nids[ax] >= 0).any()]
            if len(node_axes) > 2:
                raise UnsupportedNetworkError(
                    f"parameter '{p.name}' has {len(node_axes)} permutable axes; a graph edge joins only two neurons",
                    hint="reshape the parameter so that it has at most an input and an output neuron axis")
            slot = slot.reshape(-1)
            n = max(1, p.numel)
            if len(node_axes) == 2:
                i_ax, o_ax = p.direction if p.direction and set(p.direction) == set(node_axes) else (
                    node_axes[1], node_axes[0])
                src, dst = grids[i_ax].reshape(-1).copy(), grids[o_ax].reshape(-1).copy()
            elif len(node_axes) == 1:
                src, dst = np.full(n, -1, np.int64), grids[node_axes[0]].reshape(-1).copy()
            else:
                src, dst = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
            # elements without a target neuron take their source as target; elements without a
            # source neuron hang off a parameter node; elements with neither are its own features
            swap = dst < 0
            dst[swap], src[swap] = src[swap], -1
            if (src < 0).any():
                src[src < 0] = self.param_node(pi)
            elem = np.arange(n)
            edge, feat = dst >= 0, dst < 0
            if edge.any():
                per_param.append((pi, 0, src[edge], dst[edge], slot[edge], elem[edge], len(node_axes) == 2))
            if feat.any():
                per_param.append((pi, 1, src[feat], None, slot[feat], elem[feat], False))
        return self._assemble(per_param, width, P)

    def _assemble(self, per_param, width: int, P: int) -> Compiled:
        layout = self.layout
        N = self.n_nodes
        e_src, e_dst, e_type, e_par, e_gather_rows = [], [], [], [], []
        n_gather = np.full((N, width), P, np.int64)
        inverse = np.empty(P, np.int64)
        n_edges = 0
        for pi, kind, src, dst, slot, elem, matrix in per_param:
            p = layout.params[pi]
            flat = p.offset + elem
            if kind == 1:
                n_gather[src, slot] = flat
                continue
            key = src.astype(np.int64) * N + dst
            uniq, inv = np.unique(key, return_inverse=True)
            rows = np.full((uniq.size, width), P, np.int64)
            rows[inv, slot] = flat
            e_src.append(uniq // N)
            e_dst.append(uniq % N)
            e_type.append(np.full(uniq.size, _edge_type(p, matrix)))
            e_par.append(np.full(uniq.size, pi))
            e_gather_rows.append(rows)
            inverse[flat] = (n_edges + inv) * width + slot
            n_edges += uniq.size
        # node features come after all edge features in cat(edge_attr.flatten(), x.flatten())
        for pi, kind, src, _dst, slot, elem, _m in per_param:
            if kind == 1:
                inverse[layout.params[pi].offset + elem] = n_edges * width + src * width + slot
        def cat(xs, dt=np.int64):
            return (np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        edge_gather = np.concatenate(e_gather_rows) if e_gather_rows else np.zeros((0, width), np.int64)
        t = torch.from_numpy
        return Compiled(
            edge_index=t(np.stack([cat(e_src), cat(e_dst)])).long(), edge_type=t(cat(e_type)).long(),
            edge_param=t(cat(e_par)).long(), node_type=t(np.concatenate(self.node_type)).long(),
            node_pos=t(np.concatenate(self.node_pos)).long(),
            node_movable=t(np.concatenate(self.node_movable).astype(bool)),
            node_space=t(np.concatenate(self.node_space)).long(),
            edge_gather=t(edge_gather.reshape(-1)), node_gather=t(n_gather.reshape(-1)),
            inverse=t(inverse), width=width, spaces=tuple(self.spaces))


def _edge_type(p, matrix: bool) -> int:
    if matrix:
        role = p.role if p.role in ("linear", "conv", "embedding") else "matrix"
    else:
        role = p.role if p.role in ("bias", "norm_weight", "norm_bias", "running_mean", "running_var") else "vector"
    return EDGE_TYPES.index(role)


def _atoms(label) -> list[int]:
    if label[0] == "a":
        return [label[1]]
    if label[0] == "u":
        return []
    return [a for x in label[1] for a in _atoms(x)]


def _broadcast(arrays: list[np.ndarray]) -> list[np.ndarray]:
    nd = len(arrays)
    out = []
    for ax, a in enumerate(arrays):
        shape = [1] * nd
        shape[ax] = a.size
        out.append(a.reshape(shape))
    return list(np.broadcast_arrays(*out))
