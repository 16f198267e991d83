"""The one definition of a symmetry: a permutation of every permutable neuron group.

A symmetry ``perm`` maps group id -> LongTensor permutation ``s`` with *gather* semantics: after
applying it, unit ``j`` of the group is the old unit ``s[j]``. Along an axis labelled by a product
``A x B`` unit ``(a, b)`` becomes old unit ``(s_A[a], s_B[b])``; along a concatenation each block is
gathered with its own permutation.

Every public function here checks ``perm`` first (:func:`check_symmetry`): each key must be the id of
a group of the layout, each value a permutation of ``range(size)``, and a fixed group (one that
touches the inputs or outputs, a spatial axis, or an op without a symmetry rule) admits only the
identity. Anything else raises a ``ValueError`` naming the group, what was wrong and the expected
size, since a resized or non-bijective index would silently change the network's function.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import torch

from graphs.compile import compile_layout
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout

__all__ = ["apply_symmetry", "axis_permutation", "check_symmetry", "index_axes", "node_permutation",
           "random_symmetry", "symmetry_index"]

Symmetry = dict[int, torch.Tensor]


def random_symmetry(layout: Layout, generator: torch.Generator | None = None) -> Symmetry:
    """A uniformly random permutation of every permutable group of ``layout``."""
    return {g.id: torch.randperm(g.size, generator=generator) for g in layout.permutable_groups()}


def check_symmetry(layout: Layout, perm: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Validate ``perm`` against ``layout``; return it as ``{group id: LongTensor}``.

    Raises:
        ValueError: ``perm`` is not a mapping, a key is not a group id of ``layout``, a value is not a
            1-D integer index of the group's size, not a permutation, or moves a fixed group.
    """
    if not isinstance(perm, Mapping):
        raise ValueError(f"a symmetry is a mapping {{group id: permutation}}, got {type(perm).__name__}; "
                         "make one with graphs.random_symmetry(layout)")
    n = len(layout.groups)
    out = {}
    for key, value in perm.items():
        try:
            gid = operator.index(key)
        except TypeError:
            gid = None
        if gid is None or isinstance(key, bool):
            raise ValueError(f"symmetry key {key!r} is not a group id; the layout has groups 0..{n - 1}")
        if not 0 <= gid < n:
            raise ValueError(f"symmetry names group {gid}, but the layout {layout.name or ''}#{layout.fingerprint} "
                             f"has groups 0..{n - 1}; use the ids of layout.permutable_groups()")
        g = layout.groups[gid]
        try:
            idx = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"group {gid}: the permutation {value!r} is not an index tensor ({exc})") from exc
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ValueError(f"group {gid}: the permutation has dtype {idx.dtype}; give an integer index of size "
                             f"{g.size} (e.g. torch.randperm({g.size}))")
        if idx.dim() != 1 or idx.numel() != g.size:
            raise ValueError(f"group {gid}: the permutation has shape {tuple(idx.shape)}, expected ({g.size},): "
                             f"a reordering of all {g.size} units of the group")
        idx = idx.long()
        if not torch.equal(torch.sort(idx.cpu()).values, torch.arange(g.size)):
            values, counts = torch.unique(idx.cpu(), return_counts=True)
            repeated = values[counts > 1][:3].tolist()
            bad = idx[(idx < 0) | (idx >= g.size)][:3].tolist()
            what = f"out-of-range entries {bad}" if bad else f"repeated entries {repeated}"
            raise ValueError(f"group {gid}: not a permutation of 0..{g.size - 1} ({what}); every unit must "
                             "appear exactly once")
        if g.fixed and not torch.equal(idx.cpu(), torch.arange(g.size)):
            why = f" ({'; '.join(g.reasons)})" if g.reasons else ""
            raise ValueError(f"group {gid} (size {g.size}, {'/'.join(g.kinds)}) is fixed{why}: only the identity "
                             "is a symmetry; permute only layout.permutable_groups()")
        out[gid] = idx
    return out


def axis_permutation(layout: Layout, label, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index of a whole axis with label ``label`` under ``perm`` (assumed valid: :func:`check_symmetry`)."""
    tag = label[0]
    if tag == "u":
        return torch.zeros(1, dtype=torch.long)
    if tag == "a":
        g = layout.groups[label[1]]
        p = perm.get(g.id)
        return p.long() if p is not None and not g.fixed else torch.arange(g.size)
    parts = [axis_permutation(layout, x, perm) for x in label[1]]
    if tag == "c":
        out, off = [], 0
        for p in parts:
            out.append(p + off)
            off += p.numel()
        return torch.cat(out)
    idx = torch.zeros(1, dtype=torch.long)
    for p in parts:
        idx = (idx[:, None] * p.numel() + p[None, :]).reshape(-1)
    return idx


def apply_symmetry(state_dict: Mapping[str, torch.Tensor], layout: Layout, perm: Mapping[int, torch.Tensor]) -> dict:
    """Permute a state_dict's neurons by ``perm``; the returned network computes the same function.

    Raises:
        ValueError: ``perm`` is not a symmetry of ``layout`` (see :func:`check_symmetry`).
        LayoutMismatchError: ``state_dict`` lacks a tensor of the layout.
    """
    perm = check_symmetry(layout, perm)
    missing = [p.name for p in layout.params if p.name not in state_dict]
    if missing:
        raise LayoutMismatchError(f"the state_dict lacks {len(missing)} tensors of layout "
                                  f"{layout.name or ''}#{layout.fingerprint} (e.g. {missing[0]!r}); permute the "
                                  "weights of the network the layout was traced from")
    return index_axes(state_dict, layout, lambda lab: axis_permutation(layout, lab, perm))


def index_axes(state_dict: Mapping[str, torch.Tensor], layout: Layout, index_of) -> dict[str, torch.Tensor]:
    """Every parameter (and its tied aliases) with each axis ``index_select``-ed by ``index_of(axis label)``.

    A permutation of the groups (:func:`apply_symmetry`) or a choice of units of them (structured
    pruning, :func:`graphs.width.select_units`) both come down to this.
    """
    out = dict(state_dict)
    for p in layout.params:
        t = state_dict[p.name]
        for ax, lab in enumerate(p.axes):
            t = t.index_select(ax, index_of(lab).to(t.device))
        out[p.name] = t
        for a in p.aliases:
            out[a] = t
    return out


def symmetry_index(layout: Layout, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index on the flat vector: ``vec[symmetry_index(layout, perm)]`` is the permuted network.

    Raises:
        ValueError: ``perm`` is not a symmetry of ``layout`` (see :func:`check_symmetry`).
    """
    perm = check_symmetry(layout, perm)
    parts = []
    for p in layout.params:
        idx = torch.arange(p.numel).reshape(p.shape)
        for ax, lab in enumerate(p.axes):
            idx = idx.index_select(ax, axis_permutation(layout, lab, perm))
        parts.append(idx.reshape(-1) + p.offset)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def node_permutation(layout: Layout, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index on graph nodes: the graph of the permuted network has node ``j`` = old node ``s[j]``.

    Raises:
        ValueError: ``perm`` is not a symmetry of ``layout`` (see :func:`check_symmetry`).
    """
    perm = check_symmetry(layout, perm)
    c = compile_layout(layout)
    out = torch.arange(c.num_nodes)
    space = c.node_space
    for i, key in enumerate(c.spaces):
        key = key[1] if key[0] == "dup" else key
        nodes = (space == i).nonzero().view(-1)
        out[nodes] = nodes[axis_permutation(layout, key, perm)]
    return out
