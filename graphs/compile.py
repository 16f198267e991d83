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

Edge width: every edge vector has the same width ``K``. Padding each edge to the widest block of the
network (a 7x7 stem, a 16x16 patch embedding) would make the graph's memory grow with that block
rather than with the parameter count, so ``K`` is chosen by :func:`choose_width`: the widest block size
whose packing costs at most 1.5 times the memory of the cheapest packing. A block wider
than ``K`` becomes ``ceil(block / K)`` parallel edges between the same two neurons, told apart by
``edge_chunk`` (0, 1, ...: which ``K`` slots of the block the edge holds). Memory is then linear in the
parameter count whatever the mix of kernel sizes.
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

__all__ = ["Compiled", "compile_layout", "axis_maps", "choose_width"]


@dataclass(frozen=True)
class Compiled:
    """The structure shared by every graph of one Layout.

    Attributes:
        edge_index: ``[2, E]`` source/target node of every edge.
        edge_type: ``[E]`` index into :data:`graphs.param_graph.EDGE_TYPES`.
        edge_param: ``[E]`` index of the parameter an edge comes from.
        edge_chunk: ``[E]`` which ``K``-slot part of its block an edge holds (0 unless the block is wider
            than ``K``; see the module docstring).
        node_type: ``[N]`` :class:`graphs.param_graph.NodeType` values.
        node_pos: ``[N]`` position of fixed coordinates (-1 for a neuron no symmetry can tell apart).
        node_movable: ``[N]`` bool, some symmetry moves this neuron.
        node_space: ``[N]`` index of the neuron space (or parameter node) of each node.
        edge_gather: ``[E * K]`` index into ``cat(vec, [0])`` filling ``edge_attr``.
        node_gather: ``[N * K]`` index into ``cat(vec, [0])`` filling ``x``.
        num_params: ``P``, the layout's parameter count (the padding index of the gathers).
        width: ``K``, the edge/node feature width (largest packed vector).
        spaces: Label (JSON tree) of every neuron space, in node order; ``("dup", label, k)`` is the
            k-th extra copy of a space that one concatenated axis holds several times (e.g. the value
            and gate halves of a GLU projection, or q and k blocks of a fused qkv projection).
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_param: torch.Tensor
    edge_chunk: torch.Tensor
    node_type: torch.Tensor
    node_pos: torch.Tensor
    node_movable: torch.Tensor
    node_space: torch.Tensor
    edge_gather: torch.Tensor
    node_gather: torch.Tensor
    num_params: int
    width: int
    spaces: tuple

    @property
    def edge_mask(self) -> torch.Tensor:
        """``[E, K]`` bool: which edge slots hold a parameter (False: zero padding)."""
        got = self.__dict__.get("_edge_mask")
        if got is None:
            got = (self.edge_gather != self.num_params).view(-1, self.width)
            object.__setattr__(self, "_edge_mask", got)
        return got

    @property
    def x_mask(self) -> torch.Tensor:
        """``[N, K]`` bool: which node-feature slots hold a parameter."""
        got = self.__dict__.get("_x_mask")
        if got is None:
            got = (self.node_gather != self.num_params).view(-1, self.width)
            object.__setattr__(self, "_x_mask", got)
        return got

    @property
    def edges_full(self) -> bool:
        """Every edge slot holds a parameter (no zero padding in ``edge_attr``)."""
        got = self.__dict__.get("_edges_full")
        if got is None:
            got = bool(self.edge_mask.all())
            object.__setattr__(self, "_edges_full", got)
        return got

    @property
    def inverse(self) -> torch.Tensor:
        """``[P]`` index into ``cat(edge_attr.flatten(), x.flatten())`` giving back ``vec`` (made on first use)."""
        got = self.__dict__.get("_inverse")
        if got is None:
            feats = torch.cat([self.edge_gather, self.node_gather])
            held = torch.nonzero(feats != self.num_params).squeeze(1)
            got = torch.empty(self.num_params, dtype=torch.long)
            got[feats[held]] = held
            object.__setattr__(self, "_inverse", got)
        return got

    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_type.numel())

    @property
    def num_chunks(self) -> int:
        """Largest number of edges one block is split into (1: every block fits one edge)."""
        return int(self.edge_chunk.max()) + 1 if self.edge_chunk.numel() else 1


def compile_layout(layout: Layout) -> Compiled:
    """Return the (cached) compiled structure of ``layout``."""
    got = layout._cache.get("compiled")
    if got is None:
        got = _Builder(layout).build()
        layout._cache["compiled"] = got
    return got


_EDGE_BYTES = 40  # per edge: edge_index (2 x int64), edge_type, edge_param, edge_chunk (int64 each)
_SLOT_BYTES = 13  # per edge slot: float32 value, int64 gather index, bool mask


def choose_width(blocks: dict[int, int], slack: float = 1.5) -> int:
    """The edge width ``K`` of a graph whose edges hold vector blocks of the given sizes.

    Args:
        blocks: ``{block size: number of edges with a block of that size}``.
        slack: The widest block is kept whole unless that costs more than ``slack`` times the memory
            of the cheapest packing.

    Returns:
        The widest block size whose packing costs at most ``slack`` times the memory of the cheapest
        one. Blocks wider than ``K`` are split into several edges.
    """
    if not blocks:
        return 1

    def cost(k: int) -> int:
        return sum(n * -(-v // k) * (_EDGE_BYTES + _SLOT_BYTES * k) for v, n in blocks.items())

    costs = {k: cost(k) for k in blocks}
    best = min(costs.values())
    return max(k for k, c in costs.items() if c <= slack * best)


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
    def __init__(self, layout: Layout, fast: bool = True) -> None:
        self.layout = layout
        self.fast = fast  # False: every parameter through the general path (tests compare the two)
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

    def axis_nodes(self, p) -> tuple[list, list, list]:
        """Per axis of parameter ``p``: node id of every index (-1: none), its vector slot, the vector length."""
        nids, slots, vlens = [], [], []
        for ax, lab in enumerate(p.axes):
            if ax == 1 and p.group_input is not None:  # replaced in build() by the input-channel map
                lab = ("u",) if p.shape[1] == 1 else ("c", tuple(("u",) for _ in range(p.shape[1])))
            keys, units, sl, vlen = axis_maps(self.layout, lab)
            offs = np.array([-1 if k is None else self.space(k) for k in keys], np.int64)
            nids.append(np.where(offs >= 0, offs + units, -1))
            slots.append(sl)
            vlens.append(vlen)
        return nids, slots, vlens

    def build(self) -> Compiled:
        layout = self.layout
        P = layout.num_params
        # (p_index, kind, src, dst, slot, elements, is_matrix, block); kind 0: edges, 1: node features,
        # 2: a weight whose elements are every (input neuron, output neuron, slot) once (src: the axis maps)
        per_param = []
        blocks: dict[int, int] = {}
        for pi, p in enumerate(layout.params):
            if p.numel == 0:
                continue
            nids, slots, vlens = self.axis_nodes(p)
            nd = len(p.shape)
            k = int(np.prod(vlens)) if vlens else 1
            dense = self._dense(p, nids, slots, vlens, k) if self.fast else None
            if dense is not None:
                per_param.append((pi, 2, dense, None, None, None, True, k))
                blocks[k] = blocks.get(k, 0) + dense[2].size * dense[4].size
                continue
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
                per_param.append((pi, 0, src[edge], dst[edge], slot[edge], elem[edge], len(node_axes) == 2, k))
                blocks[k] = blocks.get(k, 0) + max(1, int(edge.sum()) // k)
            if feat.any():
                per_param.append((pi, 1, src[feat], None, slot[feat], elem[feat], False, k))
        return self._assemble(per_param, choose_width(blocks), P)

    @staticmethod
    def _dense(p, nids: list, slots: list, vlens: list, k: int) -> tuple | None:
        """The axis maps of a weight whose every element is an edge slot and every edge is full.

        That is a weight with two neuron axes, a neuron for every index of both, and ``k`` elements per
        (input neuron, output neuron) pair (plain linear and conv weights, flattened-input linears): its
        edges are all the pairs, in order, and its gather indices are one broadcast sum per element.
        Returns ``(in_axis, out_axis, in_neurons, in_rank, out_neurons, out_rank, axis_slot_terms)``, or
        None for any other parameter (the general path in :meth:`build`).
        """
        nd = len(p.shape)
        node_axes = [ax for ax in range(nd) if (nids[ax] >= 0).any()]
        if p.group_input is not None or len(node_axes) != 2 or not all((nids[ax] >= 0).all() for ax in node_axes):
            return None
        i_ax, o_ax = p.direction if p.direction and set(p.direction) == set(node_axes) else (
            node_axes[1], node_axes[0])
        u_src, a_src = np.unique(nids[i_ax], return_inverse=True)
        u_dst, a_dst = np.unique(nids[o_ax], return_inverse=True)
        if p.numel != u_src.size * u_dst.size * k:
            return None
        radix = [int(np.prod(vlens[ax + 1:])) for ax in range(nd)]  # slot = sum_ax slots[ax] * radix[ax]
        terms = [np.asarray(slots[ax], np.int64) * radix[ax] for ax in range(nd)]
        return i_ax, o_ax, u_src, a_src.reshape(-1), u_dst, a_dst.reshape(-1), terms

    def _assemble(self, per_param, width: int, P: int) -> Compiled:
        layout = self.layout
        # node features wider than K (a parameter with no neuron axis and a large block) take one
        # parameter node per K slots; the first is the one build() made
        feat_nodes: dict[int, np.ndarray] = {}
        for i, (pi, kind, src, _dst, _slot, _elem, _m, k) in enumerate(per_param):
            if kind == 1:
                extra = [self.param_node(pi) for _ in range(-(-k // width) - 1)]
                feat_nodes[i] = np.array([int(src[0])] + extra, np.int64)
        # pass 1: every parameter's edges (counts first, so that pass 2 writes into preallocated arrays)
        plans = []
        for i, (_pi, kind, src, dst, slot, _elem, _matrix, k) in enumerate(per_param):
            if kind == 0:
                plans.append((i, _general_edges(src, dst, slot, k, width)))
            elif kind == 2:
                _i_ax, _o_ax, u_src, _a, u_dst, _b, _t = src
                plans.append((i, u_src.size * u_dst.size * -(-k // width)))
        E = sum(plan if isinstance(plan, int) else plan[0].size for _, plan in plans)
        N = self.n_nodes
        edge_index = np.empty((2, E), np.int64)
        edge_type, edge_param = np.empty(E, np.int64), np.empty(E, np.int64)
        edge_chunk = np.zeros(E, np.int64)  # untouched pages stay free: most edges hold chunk 0
        edge_gather = np.empty(E * width, np.int64)
        start = 0
        for i, plan in plans:  # pass 2
            pi, kind, src, dst, slot, elem, matrix, k = per_param[i]
            p = layout.params[pi]
            if kind == 2:
                stop = start + plan
                _fill_dense(p, src, width, k, edge_index[:, start:stop], edge_chunk[start:stop],
                            edge_gather[start * width:stop * width], P)
            else:
                pair_src, pair_dst, chunks, inv, col = plan
                stop = start + chunks.size
                edge_index[0, start:stop], edge_index[1, start:stop] = pair_src, pair_dst
                edge_chunk[start:stop] = chunks
                rows = edge_gather[start * width:stop * width].reshape(-1, width)
                rows.fill(P)
                rows[inv, col] = p.offset + elem
            edge_type[start:stop] = _edge_type(p, matrix)
            edge_param[start:stop] = pi
            start = stop
        n_gather = np.full((N, width), P, np.int64)
        for i, (pi, kind, _src, _dst, slot, elem, _m, _k) in enumerate(per_param):
            if kind == 1:
                n_gather[feat_nodes[i][slot // width], slot % width] = layout.params[pi].offset + elem
        t = torch.from_numpy
        return Compiled(
            edge_index=t(edge_index), edge_type=t(edge_type), edge_param=t(edge_param), edge_chunk=t(edge_chunk),
            node_type=t(np.concatenate(self.node_type)).long(),
            node_pos=t(np.concatenate(self.node_pos)).long(),
            node_movable=t(np.concatenate(self.node_movable).astype(bool)),
            node_space=t(np.concatenate(self.node_space)).long(),
            edge_gather=t(edge_gather), node_gather=t(n_gather.reshape(-1)),
            num_params=P, width=width, spaces=tuple(self.spaces))


def _general_edges(src: np.ndarray, dst: np.ndarray, slot: np.ndarray, k: int, width: int) -> tuple:
    """Edges of a parameter's edge elements: one per distinct (src, dst, chunk), in that order.

    Returns ``(edge src, edge dst, edge chunk, each element's edge, each element's column)``.
    """
    (u_src, u_dst), inv = _unique_pairs(src, dst)
    nch = -(-k // width)
    chunk, col = slot // width, slot % width
    if nch > 1:  # a block wider than K: one edge per K slots
        sub, inv = _dense_unique(inv * nch + chunk, u_src.size * nch)
        pair, chunks = sub // nch, sub % nch
        return u_src[pair], u_dst[pair], chunks, inv, col
    return u_src, u_dst, np.zeros(u_src.size, np.int64), inv, col


def _fill_dense(p, dense: tuple, width: int, k: int, edge_index: np.ndarray, edge_chunk: np.ndarray,
                gather: np.ndarray, P: int) -> None:
    """Write the edges of a weight of the dense kind (see :meth:`_Builder._dense`) into their slices.

    Edge ``(pair, chunk)`` holds slots ``chunk * width ...`` of the pair's block, so an element's place in
    the weight's part of ``edge_attr.flatten()`` is ``pair * nch * width + slot``. Each array is a broadcast
    sum of per-axis terms written in place (no sort; a scatter only for neuron axes that also hold slots).
    ``edge_chunk`` comes zeroed.
    """
    i_ax, o_ax, u_src, a_src, u_dst, a_dst, terms = dense
    nd = len(p.shape)
    nch = -(-k // width)
    n_src, n_dst = u_src.size, u_dst.size
    if p.numel != gather.size:  # the last chunk of each block is partly padding
        gather.fill(P)
    if terms[i_ax].any() or terms[o_ax].any() or a_src.size != n_src or a_dst.size != n_dst:
        # a neuron axis that also holds slots (a linear on a flattened feature map): scatter each element
        # to its place, a broadcast sum of per-axis terms
        def along(ax: int, v: np.ndarray) -> np.ndarray:
            shape = [1] * nd
            shape[ax] = v.size
            return v.reshape(shape)

        place = along(i_ax, a_src * (n_dst * nch * width) + terms[i_ax]) + along(o_ax, a_dst * (nch * width)
                                                                                + terms[o_ax])
        for ax in range(nd):
            if ax not in (i_ax, o_ax):
                place = place + along(ax, terms[ax])
        gather[place.reshape(-1)] = np.arange(p.offset, p.offset + p.numel)
    else:  # in edge order: element = offset + in * stride_in + out * stride_out + (its slot's part)
        strides = [int(np.prod(p.shape[ax + 1:])) for ax in range(nd)]
        rank_in, rank_out = np.empty_like(a_src), np.empty_like(a_dst)
        rank_in[a_src], rank_out[a_dst] = np.arange(n_src), np.arange(n_dst)
        col_in, row_out = (rank_in * strides[i_ax] + p.offset)[:, None], (rank_out * strides[o_ax])[None, :]
        if k == 1 and width == 1:
            np.add(col_in, row_out, out=gather.reshape(n_src, n_dst))
        else:
            of_slot = np.zeros(k, np.int64)  # element offset of each slot (from the other axes)
            rest = [ax for ax in range(nd) if ax not in (i_ax, o_ax)]
            idx = np.meshgrid(*[np.arange(p.shape[ax]) for ax in rest], indexing="ij")
            of_slot[sum(terms[ax][i] for ax, i in zip(rest, idx, strict=True))] = sum(
                i * strides[ax] for ax, i in zip(rest, idx, strict=True))
            view = gather.reshape(n_src, n_dst, nch * width)[:, :, :k]
            np.add((col_in + row_out)[:, :, None], of_slot[None, None, :], out=view)
    edge_index[0].reshape(n_src, -1)[:] = u_src[:, None]
    edge_index[1].reshape(n_src, n_dst * nch)[:] = np.repeat(u_dst, nch)[None, :]
    if nch > 1:
        edge_chunk.reshape(-1, nch)[:] = np.arange(nch)


def _dense_unique(key: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` for keys in ``[0, span)``.

    A counting pass when ``span`` is not much larger than the number of keys (no sort), else a sort.
    """
    if span > 4 * key.size + 1024:
        return np.unique(key, return_inverse=True)
    seen = np.zeros(span, bool)
    seen[key] = True
    uniq = np.flatnonzero(seen)
    rank = np.cumsum(seen) - 1
    return uniq, rank[key]


def _unique_pairs(src: np.ndarray, dst: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Distinct ``(src, dst)`` pairs in lexicographic order and each element's pair index."""
    s0, d0 = int(src.min()), int(dst.min())
    nd = int(dst.max()) - d0 + 1
    key = (src - s0) * nd + (dst - d0)
    uniq, inv = _dense_unique(key, (int(src.max()) - s0 + 1) * nd)
    return (uniq // nd + s0, uniq % nd + d0), inv


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
