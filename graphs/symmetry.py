"""The one definition of a symmetry: a permutation of every permutable neuron group.

A symmetry ``perm`` maps group id -> LongTensor permutation ``s`` with *gather* semantics: after
applying it, unit ``j`` of the group is the old unit ``s[j]``. Along an axis labelled by a product
``A x B`` unit ``(a, b)`` becomes old unit ``(s_A[a], s_B[b])``; along a concatenation each block is
gathered with its own permutation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from graphs.compile import compile_layout
from graphs.layout import Layout

__all__ = ["apply_symmetry", "axis_permutation", "node_permutation", "random_symmetry", "symmetry_index"]

Symmetry = dict[int, torch.Tensor]


def random_symmetry(layout: Layout, generator: torch.Generator | None = None) -> Symmetry:
    """A uniformly random permutation of every permutable group of ``layout``."""
    return {g.id: torch.randperm(g.size, generator=generator) for g in layout.permutable_groups()}


def axis_permutation(layout: Layout, label, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index of a whole axis with label ``label`` under ``perm``."""
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
    """Permute a state_dict's neurons by ``perm``; the returned network computes the same function."""
    out = dict(state_dict)
    for p in layout.params:
        t = state_dict[p.name]
        for ax, lab in enumerate(p.axes):
            t = t.index_select(ax, axis_permutation(layout, lab, perm).to(t.device))
        out[p.name] = t
        for a in p.aliases:
            out[a] = t
    return out


def symmetry_index(layout: Layout, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index on the flat vector: ``vec[symmetry_index(layout, perm)]`` is the permuted network."""
    parts = []
    for p in layout.params:
        idx = torch.arange(p.numel).reshape(p.shape)
        for ax, lab in enumerate(p.axes):
            idx = idx.index_select(ax, axis_permutation(layout, lab, perm))
        parts.append(idx.reshape(-1) + p.offset)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def node_permutation(layout: Layout, perm: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Gather index on graph nodes: the graph of the permuted network has node ``j`` = old node ``s[j]``."""
    c = compile_layout(layout)
    out = torch.arange(c.num_nodes)
    space = c.node_space
    for i, key in enumerate(c.spaces):
        key = key[1] if key[0] == "dup" else key
        nodes = (space == i).nonzero().view(-1)
        out[nodes] = nodes[axis_permutation(layout, key, perm)]
    return out
