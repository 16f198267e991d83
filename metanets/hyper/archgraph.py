"""``ArchGraph``: the data-free graph of an architecture that a hypernetwork reads.

Built once from a :class:`graphs.Layout` (the same trace that gives parameter graphs), it has two
kinds of nodes:

* one **group node** per neuron group of the layout (hidden, input, output, spatial);
* one **tensor node** per parameter tensor (weights, biases, norm scales, running statistics).

A tensor node is joined to the group node of every atom in every axis label of the tensor (typed by
the axis's role: output axis, input axis, other axis), so two layers that share a neuron group
(a layer and the next one, the two branches of a residual sum) are two hops apart. Long-range
*virtual edges* join tensor nodes whose distance in that tensor-adjacency graph is ``2..hops``
(GHN-2's virtual edges, typed by distance); spatial groups (kernel offsets) are left out of the
adjacency so they do not connect every convolution of the network to every other.

For decoding, every axis of every tensor gets a *unit index*: unit ``i`` of an axis is a sum of rows
of a global unit table (one row per unit of every group) plus a block code for concatenations, so
products (channels x positions, heads x head_dim) and concatenations decode without special cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from graphs import Layout

__all__ = ["ArchGraph", "AxisIndex", "GROUP_KINDS", "ROLES", "num_edge_types", "role_index"]

ROLES = ("linear", "conv", "embedding", "scale", "bias", "norm_weight", "norm_bias", "running_mean",
         "running_var", "other")
"""Parameter roles (``ParamSpec.role``); unknown roles map to ``other``."""

GROUP_KINDS = ("hidden", "input", "output", "spatial", "constant", "opaque")

MAX_NDIM = 5
"""Tensors with more axes than this are rejected (none of the traced layer types has more)."""

# Edge types: 0-2 tensor -> group (output axis, input axis, other axis); 3-5 the reverse;
# 6 + (d - 1) a virtual tensor <-> tensor edge at distance d.
_T2G, _G2T = 0, 3


def num_edge_types(hops: int) -> int:
    """Number of edge types of ArchGraphs built with virtual edges up to distance ``hops``."""
    return 6 + hops


@dataclass(frozen=True)
class AxisIndex:
    """How to assemble the per-unit embeddings of one tensor axis.

    Attributes:
        units: ``[size, L]`` rows of the unit table summed for each unit (``-1`` pads).
        block: ``[size]`` concatenation block of each unit (0 outside concatenations).
        movable: Some symmetry permutes this axis (it touches a non-fixed group).
        blocked: The axis is (part of) a concatenation (``block`` is not all zero).
        span: ``(start, size)`` when the axis is one whole group: its rows are a slice of the table.
    """

    units: torch.Tensor
    block: torch.Tensor
    movable: bool = False
    blocked: bool = False
    span: tuple[int, int] | None = None


@dataclass(frozen=True, eq=False)
class ArchGraph:
    """An architecture as a graph of neuron groups and parameter tensors (see the module docstring).

    Attributes:
        layout: The traced :class:`graphs.Layout`.
        node_feat: ``[G + P, F]`` float features (shape encodings, roles, kinds, depth).
        node_kind: ``[G + P]`` 0 for group nodes, 1 for tensor nodes.
        edge_index: ``[2, E]`` source, target.
        edge_type: ``[E]`` 0-2 tensor to group (output, input, other axis), 3-5 the reverse,
            ``5 + d`` a virtual tensor-tensor edge at distance ``d`` (see :func:`num_edge_types`).
        unit_group: ``[U]`` group of every row of the unit table.
        unit_pos: ``[U]`` index of the unit inside its group.
        axes: ``axes[p][j]``: the :class:`AxisIndex` of axis ``j`` of parameter ``p``.
        hops: Virtual-edge range the graph was built with.
    """

    layout: Layout
    node_feat: torch.Tensor
    node_kind: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    unit_group: torch.Tensor
    unit_pos: torch.Tensor
    axes: tuple[tuple[AxisIndex, ...], ...]
    hops: int

    @property
    def num_groups(self) -> int:
        """Number of group nodes (they come first; tensor node ``p`` is ``num_groups + p``)."""
        return len(self.layout.groups)

    @classmethod
    def of(cls, layout: Layout, hops: int = 4) -> ArchGraph:
        """The (cached) ArchGraph of ``layout``."""
        key = ("archgraph", hops)
        got = layout._cache.get(key)
        if got is None:
            got = _build(layout, hops)
            layout._cache[key] = got
        return got

    def to(self, device: torch.device | str) -> ArchGraph:
        """A copy with every tensor on ``device`` (cached on the layout per device)."""
        device = torch.device(device)
        if self.node_feat.device == device:
            return self
        key = ("archgraph", self.hops, str(device))
        got = self.layout._cache.get(key)
        if got is None:
            axes = tuple(tuple(replace(a, units=a.units.to(device), block=a.block.to(device)) for a in p)
                         for p in self.axes)
            got = ArchGraph(self.layout, self.node_feat.to(device), self.node_kind.to(device),
                            self.edge_index.to(device), self.edge_type.to(device), self.unit_group.to(device),
                            self.unit_pos.to(device), axes, self.hops)
            self.layout._cache[key] = got
        return got


def role_index(role: str) -> int:
    """Index of ``role`` in :data:`ROLES` (``other`` when unknown)."""
    return ROLES.index(role) if role in ROLES else ROLES.index("other")


def _leaves(layout: Layout, label, offsets: np.ndarray) -> tuple[list[list[int]], list[int], set[int]]:
    """Per unit of ``label``: the unit-table rows it sums, its block, and the atoms it touches."""
    tag = label[0]
    if tag == "u":
        return [[]], [0], set()
    if tag == "a":
        g = label[1]
        n = layout.groups[g].size
        return [[int(offsets[g]) + i] for i in range(n)], [0] * n, {g}
    parts = [_leaves(layout, x, offsets) for x in label[1]]
    atoms = set().union(*(p[2] for p in parts))
    if tag == "c":
        rows, blocks = [], []
        for b, (r, bl, _) in enumerate(parts):
            rows += r
            blocks += [b + 1 + 8 * x for x in bl]  # nested blocks get distinct codes
        return rows, blocks, atoms
    rows, blocks = [[]], [0]
    for r, bl, _ in parts:  # row-major product
        rows = [a + b for a in rows for b in r]
        blocks = [a * 8 + b for a in blocks for b in bl]
    return rows, blocks, atoms


def _axis_index(layout: Layout, label, offsets: np.ndarray) -> tuple[AxisIndex, set[int]]:
    """The units (padded with -1 where rows differ in length) of one parameter axis, and its group atoms."""
    groups = layout.groups
    rows, blocks, atoms = _leaves(layout, label, offsets)
    width = max(len(r) for r in rows)
    if all(len(r) == width for r in rows):
        units = torch.tensor(rows, dtype=torch.long).reshape(len(rows), width)
    else:
        units = torch.full((len(rows), width), -1, dtype=torch.long)
        for u, r in enumerate(rows):
            units[u, :len(r)] = torch.tensor(r, dtype=torch.long)
    movable = any(not groups[a].fixed and groups[a].size > 1 for a in atoms)
    span = None
    if width == 1 and torch.equal(units[:, 0], torch.arange(int(units[0, 0]), int(units[0, 0]) + len(rows))):
        span = (int(units[0, 0]), len(rows))
    return AxisIndex(units, torch.tensor(blocks, dtype=torch.long), movable, any(blocks), span), atoms


def _virtual_edges(tensor_groups: list[set[int]], num_groups: int, hops: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of tensors at distance 2..hops (tensors sharing a group are at distance 1) and their distances."""
    r = [p_i for p_i, t in enumerate(tensor_groups) for _ in t]
    c = [a for t in tensor_groups for a in t]
    inc = csr_matrix((np.ones(len(r)), (r, c)), shape=(len(tensor_groups), max(num_groups, 1)))
    adj = (inc @ inc.T).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    dist = dijkstra(adj, unweighted=True, limit=hops)
    ii, jj = np.nonzero((dist >= 2) & (dist <= hops))
    return ii, jj, dist[ii, jj].astype(np.int64)


def _build(layout: Layout, hops: int) -> ArchGraph:
    groups, params = layout.groups, layout.params
    G, P = len(groups), len(params)
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if G else np.zeros(0, np.int64)
    F = 2 + len(GROUP_KINDS) + len(ROLES) + (MAX_NDIM + 1) + MAX_NDIM + 4
    feat = np.zeros((G + P, F), np.float32)
    for g in groups:
        feat[g.id, 0] = math.log1p(g.size)
        feat[g.id, 1] = float(g.fixed)
        for k in g.kinds:
            if k in GROUP_KINDS:
                feat[g.id, 2 + GROUP_KINDS.index(k)] = 1.0
    base = 2 + len(GROUP_KINDS)
    src, dst, etype, axes = [], [], [], []
    tensor_groups: list[set[int]] = []
    for p_i, p in enumerate(params):
        if len(p.shape) > MAX_NDIM:
            raise ValueError(f"parameter {p.name!r} has {len(p.shape)} axes; the hypernetwork decodes at most "
                             f"{MAX_NDIM} (reshape it inside the module's forward instead)")
        row = G + p_i
        feat[row, base + role_index(p.role)] = 1.0
        o = base + len(ROLES)
        feat[row, o + len(p.shape)] = 1.0
        o += MAX_NDIM + 1
        for j, s in enumerate(p.shape):
            feat[row, o + j] = math.log1p(s)
        o += MAX_NDIM
        feat[row, o:o + 4] = (math.log1p(p.numel), float(p.is_buffer), p_i / max(P - 1, 1), 1.0)
        out_ax, in_ax = p.direction if p.direction else (0 if p.shape else -1, -1)
        touched: set[int] = set()
        p_axes = []
        for j, label in enumerate(p.axes):
            index, atoms = _axis_index(layout, label, offsets)
            p_axes.append(index)
            kind = 0 if j == out_ax else 1 if j == in_ax else 2
            for a in sorted(atoms):
                if groups[a].spatial:
                    continue
                src += [row, a]
                dst += [a, row]
                etype += [_T2G + kind, _G2T + kind]
                touched.add(a)
        axes.append(tuple(p_axes))
        tensor_groups.append(touched)
    # group depth: mean position of the tensors touching it
    for a in range(G):
        pos = [i for i, t in enumerate(tensor_groups) if a in t]
        feat[a, F - 2] = float(np.mean(pos)) / max(P - 1, 1) if pos else 0.0
    # virtual edges between tensors at distance 2..hops (tensors sharing a group are at distance 1)
    if P > 1 and hops >= 2:
        ii, jj, d = _virtual_edges(tensor_groups, G, hops)
        src += (G + ii).tolist()
        dst += (G + jj).tolist()
        etype += (6 + d - 1).tolist()
    return ArchGraph(
        layout=layout,
        node_feat=torch.from_numpy(feat),
        node_kind=torch.cat([torch.zeros(G, dtype=torch.long), torch.ones(P, dtype=torch.long)]),
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        edge_type=torch.tensor(etype, dtype=torch.long),
        unit_group=torch.from_numpy(np.repeat(np.arange(G), sizes)).long(),
        unit_pos=torch.from_numpy(np.concatenate([np.arange(s) for s in sizes]) if G else np.zeros(0)).long(),
        axes=tuple(axes),
        hops=hops,
    )
