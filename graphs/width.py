"""Width families and smoothing by permutation: what a weight manifold over widths needs from a layout.

A *width family* is a factory ``make(width: float) -> nn.Module`` whose permutable neuron groups
scale with the ratio (``1.0`` is the full network) while its fixed groups (inputs, outputs, kernel
offsets) keep their size. :func:`trace_family` traces several members and checks that they agree:
the same parameters with the same axis structure, permutable groups of about ``ratio x`` their full
size, fixed groups unchanged. Unit ``i`` of a permutable group of ``n`` units sits at the normalized
coordinate ``(i + 0.5) / n`` in ``[0, 1]`` (:func:`unit_coordinates`), so units of narrow and wide
members of the family share one axis.

*Smoothing*: the neurons of a trained network can be put in any order without changing its function
(:func:`graphs.apply_symmetry`). :func:`smooth` orders every permutable group so that the total
variation of the weights along the group (the summed L1 distance between consecutive units' weight
vectors, :func:`total_variation`) is small: a shortest Hamiltonian path through the units, found by
nearest neighbour from several starts and 2-opt. The distance between two units of one group does
not depend on how the other groups are ordered, so the groups are ordered one at a time, exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from graphs.layout import Layout
from graphs.symmetry import apply_symmetry, index_axes
from graphs.trace import trace

__all__ = ["WidthFamily", "block_groups", "build_member", "group_owner", "select_units", "shortest_path_order",
           "smooth", "total_variation", "trace_family", "unit_coordinates", "unit_features"]


def unit_coordinates(n: int) -> torch.Tensor:
    """Normalized coordinates ``(i + 0.5) / n`` of the ``n`` units of a permutable group (float64)."""
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def group_owner(layout: Layout, gid: int) -> str:
    """``'name' axis k``: the first parameter axis that group ``gid`` labels (for error messages)."""
    for p in layout.params:
        for ax, lab in enumerate(p.axes):
            if gid in _atoms(lab):
                return f"'{p.name}' axis {ax}"
    return f"group {gid}"


def _atoms(label) -> list[int]:
    if label[0] == "a":
        return [label[1]]
    if label[0] == "u":
        return []
    return [g for part in label[1] for g in _atoms(part)]


def block_groups(layout: Layout) -> set[int]:
    """Groups that only ever count blocks of other groups: the outer factors of products such as heads x head_dim.

    Such a group (the attention heads) may keep its size across a width family while its blocks narrow; every
    other permutable group must scale.
    """
    outer: set[int] = set()
    inner: set[int] = set()

    def walk(label, is_outer: bool) -> None:
        if label[0] == "a":
            (outer if is_outer else inner).add(label[1])
        elif label[0] != "u":
            parts = label[1]
            for i, part in enumerate(parts):
                walk(part, is_outer or (label[0] == "p" and i < len(parts) - 1))

    for p in layout.params:
        for lab in p.axes:
            walk(lab, False)
    return outer - inner


def build_member(make: Callable, width: float, spec: str = "make") -> nn.Module:
    """``make(width)``, checked: the factory takes the width and returns an ``nn.Module``.

    Raises:
        ValueError: ``make`` takes no width argument, fails, or returns something else than a module.
    """
    try:
        inspect.signature(make).bind(width)
    except TypeError as exc:
        raise ValueError(f"{spec} must take the width ratio: def make(width: float) -> nn.Module "
                         f"(it cannot be called as make({width}): {exc})") from exc
    except ValueError:  # builtins without a signature: just try it
        pass
    try:
        net = make(width)
    except Exception as exc:  # the user's code: any failure is theirs
        raise ValueError(f"{spec}({width}) failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec}({width}) returned {type(net).__name__}, not an nn.Module")
    return net


@dataclass
class WidthFamily:
    """Traced members of a width family.

    Attributes:
        full: The layout of ``make(1.0)``.
        layouts: Layout of each traced ratio (``1.0`` included).
        spec: The factory's name, for messages.
    """

    full: Layout
    layouts: dict[float, Layout]
    spec: str = "make"

    @property
    def scaling_groups(self) -> list[int]:
        """Ids of the permutable groups of the full network: they scale with the width.

        A count of blocks, such as attention heads, may instead keep its size (see :func:`block_groups`).
        """
        return [g.id for g in self.full.groups if not g.fixed]

    def ratios(self, layout: Layout) -> dict[int, float]:
        """Size of every group of ``layout`` over its full size."""
        return {g.id: g.size / self.full.groups[g.id].size for g in layout.groups}

    def check(self, layout: Layout, width: float) -> None:
        """Raise ``ValueError`` unless ``layout`` (of ``make(width)``) is a consistent member of the family."""
        full, spec = self.full, self.spec
        names, full_names = [p.name for p in layout.params], [p.name for p in full.params]
        if names != full_names:
            extra = sorted(set(names) ^ set(full_names))
            what = f"'{extra[0]}' is in one but not the other" if extra else "their order differs"
            raise ValueError(f"{spec}({width}) and {spec}(1.0) have different parameters ({what}); every width "
                             "must build the same layers, only narrower")
        if len(layout.groups) != len(full.groups):
            raise ValueError(f"{spec}({width}) has {len(layout.groups)} neuron groups but {spec}(1.0) has "
                             f"{len(full.groups)}; every width must connect its layers the same way")
        for p, q in zip(layout.params, full.params, strict=True):
            if p.axes != q.axes:
                raise ValueError(f"parameter '{p.name}' of {spec}({width}) is wired differently from {spec}(1.0) "
                                 "(its axes belong to other neuron groups); only the widths may change")
        blocks = block_groups(full)
        for g, f in zip(layout.groups, full.groups, strict=True):
            where = group_owner(full, f.id)
            if f.fixed and g.size != f.size:
                raise ValueError(f"neuron group {f.id} ({where}, {'/'.join(f.kinds)}) has {f.size} units in "
                                 f"{spec}(1.0) but {g.size} in {spec}({width}); inputs, outputs and kernel offsets "
                                 "must keep their size at every width")
            if not f.fixed and g.size == f.size and f.id in blocks:
                continue  # a count of blocks (attention heads) may stay the same while the blocks narrow
            if not f.fixed:
                expect = width * f.size
                if g.size > f.size or abs(g.size - expect) > max(1.0, 0.5 * expect):
                    raise ValueError(f"neuron group {f.id} ({where}) has {g.size} units in {spec}({width}) and "
                                     f"{f.size} in {spec}(1.0): it does not scale with the width (about "
                                     f"{max(1, round(expect))} expected); make its size depend on width")


def trace_family(make: Callable, example_inputs: Sequence[torch.Tensor], ratios: Sequence[float],
                 spec: str = "make") -> WidthFamily:
    """Trace ``make(1.0)`` and ``make(r)`` for every ratio and check the family (:meth:`WidthFamily.check`).

    Raises:
        ValueError: A ratio outside ``(0, 1]``, a factory without a width argument, or a member that does
            not fit the family (the message names the parameter or neuron group).
    """
    bad = [r for r in ratios if not 0 < r <= 1]
    if bad:
        raise ValueError(f"width ratio {bad[0]} is outside (0, 1]: 1.0 is the full network")
    full = trace(build_member(make, 1.0, spec), tuple(example_inputs))
    family = WidthFamily(full, {1.0: full}, spec)
    for r in sorted(set(ratios) - {1.0}):
        layout = trace(build_member(make, r, spec), tuple(example_inputs))
        family.check(layout, r)
        family.layouts[r] = layout
    if not family.scaling_groups:
        raise ValueError(f"{spec}(1.0) has no permutable neuron group whose width could change")
    return family


# ------------------------------------------------------------- smoothing
def _unit_index(layout: Layout, label, gid: int) -> torch.Tensor:
    """Per position of an axis with ``label``: the unit of group ``gid`` it belongs to, or -1."""
    tag = label[0]
    if tag == "u":
        return torch.full((1,), -1, dtype=torch.long)
    if tag == "a":
        n = layout.groups[label[1]].size
        return torch.arange(n) if label[1] == gid else torch.full((n,), -1, dtype=torch.long)
    parts = [_unit_index(layout, x, gid) for x in label[1]]
    if tag == "c":
        return torch.cat(parts)
    idx = torch.full((1,), -1, dtype=torch.long)
    for p in parts:  # row-major product: a position belongs to the unit of whichever factor holds gid
        idx = torch.maximum(idx[:, None].expand(-1, p.numel()), p[None, :].expand(idx.numel(), -1)).reshape(-1)
    return idx


def unit_features(state_dict: Mapping[str, torch.Tensor], layout: Layout, gid: int) -> torch.Tensor:
    """``[n, F]``: every weight touching each unit of group ``gid`` (incoming and outgoing, all tensors)."""
    n = layout.groups[gid].size
    cols = []
    for p in layout.params:
        if p.is_buffer:
            continue
        t = state_dict[p.name].detach()
        for ax, lab in enumerate(p.axes):
            idx = _unit_index(layout, lab, gid)
            keep = idx >= 0
            if not bool(keep.any()):
                continue
            pos = keep.nonzero().view(-1)
            order = pos[torch.argsort(idx[pos], stable=True)]
            moved = t.movedim(ax, 0).index_select(0, order.to(t.device))
            cols.append(moved.reshape(n, -1))
    if not cols:
        raise ValueError(f"neuron group {gid} labels no parameter, so it has no weights to order")
    return torch.cat(cols, dim=1)


def total_variation(state_dict: Mapping[str, torch.Tensor], layout: Layout, gid: int) -> float:
    """Summed L1 distance between consecutive units of group ``gid`` (their :func:`unit_features`)."""
    f = unit_features(state_dict, layout, gid).double()
    return float((f[1:] - f[:-1]).abs().sum()) if len(f) > 1 else 0.0


def _path_cost(d: np.ndarray, path: np.ndarray) -> float:
    return float(d[path[:-1], path[1:]].sum())


def _two_opt(d: np.ndarray, path: np.ndarray, max_rounds: int = 100) -> np.ndarray:
    """Open-path 2-opt: reverse ``path[i:j+1]`` while that shortens the path."""
    n = len(path)
    for _ in range(max_rounds):
        improved = False
        for i in range(n - 1):
            j = np.arange(i + 1, n)
            a, b = path[i], path[j]
            before = (d[path[i - 1], a] if i > 0 else 0.0) + np.where(j < n - 1, d[b, path[np.minimum(j + 1, n - 1)]],
                                                                      0.0)
            after = (d[path[i - 1], b] if i > 0 else 0.0) + np.where(j < n - 1, d[a, path[np.minimum(j + 1, n - 1)]],
                                                                     0.0)
            gain = before - after
            k = int(np.argmax(gain))
            if gain[k] > 1e-12 * max(1.0, float(before[k])):
                path[i:j[k] + 1] = path[i:j[k] + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return path


def shortest_path_order(d: np.ndarray, starts: int = 8, seed: int = 0) -> np.ndarray:
    """A short Hamiltonian path through a distance matrix: nearest neighbour (several starts) + 2-opt."""
    n = len(d)
    if n <= 2:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for s in [0, *rng.choice(n, size=min(starts, n) - 1, replace=False).tolist()]:
        seen = np.zeros(n, bool)
        path = [s]
        seen[s] = True
        for _ in range(n - 1):
            row = np.where(seen, np.inf, d[path[-1]])
            nxt = int(np.argmin(row))
            path.append(nxt)
            seen[nxt] = True
        path = _two_opt(d, np.array(path))
        cost = _path_cost(d, path)
        if cost < best_cost:
            best, best_cost = path, cost
    return best


def smooth(state_dict: Mapping[str, torch.Tensor], layout: Layout, groups: Sequence[int] | None = None,
           starts: int = 8) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor], dict[int, tuple[float, float]]]:
    """Reorder the neurons of every permutable group for a low total variation; the function is unchanged.

    Returns:
        ``(smoothed state_dict, permutation per group (gather semantics, as graphs.apply_symmetry),
        {group id: (total variation before, after)})``.
    """
    gids = [g.id for g in layout.permutable_groups()] if groups is None else list(groups)
    perm, tv = {}, {}
    for gid in gids:
        f = unit_features(state_dict, layout, gid).double()
        d = torch.cdist(f[None], f[None], p=1)[0].cpu().numpy()
        order = shortest_path_order(d, starts)
        ident = np.arange(len(order))
        before, after = _path_cost(d, ident), _path_cost(d, order)
        if after >= before:  # never worse than the trained order
            order, after = ident, before
        perm[gid] = torch.as_tensor(order, dtype=torch.long)
        tv[gid] = (before, after)
    return apply_symmetry(state_dict, layout, perm), perm, tv


# --------------------------------------------------------------- pruning
def _select_index(layout: Layout, label, keep: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Positions of an axis with ``label`` that survive when group ``g`` keeps only units ``keep[g]``."""
    tag = label[0]
    if tag == "u":
        return torch.zeros(1, dtype=torch.long)
    if tag == "a":
        k = keep.get(label[1])
        return k.long() if k is not None else torch.arange(layout.groups[label[1]].size)
    if tag == "c":
        out, off = [], 0
        for x in label[1]:
            out.append(_select_index(layout, x, keep) + off)
            off += _label_size(layout, x)
        return torch.cat(out)
    idx = torch.zeros(1, dtype=torch.long)
    for x in label[1]:
        idx = (idx[:, None] * _label_size(layout, x) + _select_index(layout, x, keep)[None, :]).reshape(-1)
    return idx


def _label_size(layout: Layout, label) -> int:
    if label[0] == "u":
        return 1
    if label[0] == "a":
        return layout.groups[label[1]].size
    sizes = [_label_size(layout, x) for x in label[1]]
    return sum(sizes) if label[0] == "c" else int(np.prod(sizes))


def select_units(state_dict: Mapping[str, torch.Tensor], layout: Layout, keep: Mapping[int, torch.Tensor]) -> dict:
    """The sub-network that keeps units ``keep[g]`` of each group ``g`` (structured pruning; others whole)."""
    return index_axes(state_dict, layout, lambda lab: _select_index(layout, lab, keep))
