"""Align, interpolate and merge networks modulo their neuron permutation symmetries.

Two networks of one :class:`~graphs.Layout` compute the same function under any symmetry of the layout
(:func:`graphs.apply_symmetry`). :func:`align` picks the symmetry that brings ``other`` as close as possible
to ``reference``, so that their weights can be interpolated or averaged.

**Weight matching** maximizes ``sum_p <W_ref_p, W_other_p permuted>`` over every float parameter ``p``
(running statistics are data statistics, recomputed after interpolation; a buffer counts only where it
carries a group that no parameter does) by coordinate descent over the layout's permutable groups: each
step fixes the other groups' permutations and solves one linear assignment
(``scipy.optimize.linear_sum_assignment``) for one group.
The cost of a group is read off the axis labels alone: along an axis whose label contains the group
(alone, inside a product such as ``heads x head_dim``, or as a block of a concatenation) the positions of
unit ``i`` are those that :func:`graphs.axis_permutation` moves together with ``i``, so a head moves as
one unit with all its dimensions, exactly as the layout's symmetry allows. Sweeps in random group order
repeat until no group improves. Descent starts from the identity and from an assignment of
permutation-invariant unit statistics, and the better result is kept (the second start recovers a
permuted copy exactly even where the groups of a product are coupled, e.g. heads and head dims).

**Activation matching** (see :mod:`graphs.activations`) runs the same descent on the standardized
intermediate activations of both networks on a batch, labelled by the tracer; groups that no
activation axis shows fall back to weight matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from graphs.activations import label_atoms, record_activations
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout
from graphs.symmetry import apply_symmetry, axis_permutation

__all__ = ["align", "canonical_reference", "canonicalize", "interpolate_state_dicts", "merge", "similarity",
           "weight_matching"]

Symmetry = dict[int, torch.Tensor]


@dataclass
class _Item:
    """One tensor of both networks with its axis labels (a parameter, or a recorded activation)."""

    ref: torch.Tensor
    other: torch.Tensor
    axes: tuple


def align(reference, other, layout: Layout, method: str = "weights", data=None, model: torch.nn.Module | None = None,
          max_sweeps: int = 100, seed: int = 0, normalize: bool = False) -> Symmetry:
    """The symmetry that brings ``other`` closest to ``reference``.

    ``apply_symmetry(other, layout, perm)`` computes the same function as ``other``.

    Args:
        reference: State_dict or module of ``layout``.
        other: State_dict or module of ``layout``.
        layout: Their layout (:func:`graphs.trace`).
        method: ``"weights"`` (weight matching) or ``"activations"`` (correlation of activations on ``data``).
        data: For ``"activations"``: a batch of inputs (a tensor, or a tuple of positional inputs).
        model: For ``"activations"``: a module of the architecture to trace, when ``reference`` is a state_dict.
        max_sweeps: Most sweeps over all groups.
        seed: Seed of the random group order.
        normalize: Weight matching: divide each parameter's inner product by its two norms, so that every
            tensor weighs the same (layers whose scale is arbitrary, as before a BatchNorm, no longer dominate).

    Returns:
        Group id -> permutation (gather semantics), one entry per permutable group.

    Raises:
        LayoutMismatchError: When a network does not match ``layout``.
        ValueError: An unknown method, or ``"activations"`` without data or a module.
    """
    ref_sd, other_sd = _state(reference, layout, "reference"), _state(other, layout, "other")
    if method == "weights":
        return weight_matching(ref_sd, other_sd, layout, max_sweeps=max_sweeps, seed=seed, normalize=normalize)
    if method != "activations":
        raise ValueError(f"unknown alignment method {method!r}; use 'weights' or 'activations'")
    module = reference if isinstance(reference, torch.nn.Module) else model
    if module is None or data is None:
        raise ValueError("activation matching needs data (a batch of inputs) and a module to trace "
                         "(pass reference as a module or model=...)")
    inputs = data if isinstance(data, tuple) else (data,)
    acts_ref, acts_other = record_activations(module, layout, ref_sd, other_sd, inputs)
    items = [_Item(a, b, axes) for (a, axes), (b, _) in zip(acts_ref, acts_other, strict=True)]
    rng = np.random.default_rng(seed)
    seen = {g for it in items for lab in it.axes for g in label_atoms(lab)}
    groups = [g.id for g in layout.permutable_groups() if g.id in seen]
    perm = _best_descent(items, layout, groups, rng, max_sweeps)
    rest = [g.id for g in layout.permutable_groups() if g.id not in seen]
    if rest:  # groups no activation shows: weight matching with the matched groups held fixed
        start = {**perm, **{g: torch.arange(layout.groups[g].size) for g in rest}}
        perm = _descent(_weight_items(ref_sd, other_sd, layout, normalize), layout, rest, start, rng, max_sweeps)
    return perm


def weight_matching(reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], layout: Layout,
                    max_sweeps: int = 100, seed: int = 0, normalize: bool = False,
                    orbit_invariant: bool = False) -> Symmetry:
    """Weight matching of two state_dicts of ``layout`` (see the module docstring and :func:`align`).

    ``orbit_invariant``: descend from the invariant-statistics start only. Then every permuted copy of
    ``other`` is brought to the same network (barring exact ties), which canonicalization needs; the
    default also descends from the identity and keeps the better of the two.
    """
    items = _weight_items(reference, other, layout, normalize)
    groups = [g.id for g in layout.permutable_groups()]
    rng = np.random.default_rng(seed)
    if orbit_invariant:
        return _descent(items, layout, groups, _invariant_start(items, layout, groups), rng, max_sweeps)
    return _best_descent(items, layout, groups, rng, max_sweeps)


def similarity(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], layout: Layout) -> float:
    """Cosine similarity of two networks' parameters (the tensors weight matching compares; no buffers)."""
    dot = na = nb = 0.0
    for p in layout.params:
        if p.is_buffer:
            continue
        x, y = a[p.name].double(), b[p.name].double()
        dot += float((x * y).sum())
        na += float((x * x).sum())
        nb += float((y * y).sum())
    return dot / max(np.sqrt(na * nb), 1e-300)


def interpolate_state_dicts(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], t: float) -> dict:
    """``(1 - t) a + t b`` for floating tensors; other tensors (e.g. ``num_batches_tracked``) are ``a``'s."""
    if set(a) != set(b):
        raise LayoutMismatchError(f"the state_dicts have different keys: {sorted(set(a) ^ set(b))[:4]}")
    return {k: torch.lerp(v, b[k].to(v.dtype), t) if v.is_floating_point() else v.clone() for k, v in a.items()}


def merge(state_dicts, layout: Layout, method: str = "weights", data=None, model: torch.nn.Module | None = None,
          seed: int = 0, normalize: bool = False) -> dict:
    """Align every network to the first, then average their floating tensors.

    Args:
        state_dicts: Two or more state_dicts (or modules) of ``layout``.
        layout: Their layout.
        method: As in :func:`align`.
        data: As in :func:`align`.
        model: As in :func:`align`.
        seed: Seed of the group order.
        normalize: As in :func:`align`.

    Returns:
        The averaged state_dict (integer buffers are the first network's).
    """
    sds = [_state(s, layout, f"network {i}") for i, s in enumerate(state_dicts)]
    if len(sds) < 2:
        raise ValueError(f"merge needs at least two networks, got {len(sds)}")
    if method == "activations" and model is None and isinstance(state_dicts[0], torch.nn.Module):
        model = state_dicts[0]
    aligned = [sds[0]] + [apply_symmetry(s, layout, align(sds[0], s, layout, method, data, model, seed=seed,
                                                                normalize=normalize))
                          for s in sds[1:]]
    out = {}
    for k, v in sds[0].items():
        out[k] = torch.stack([s[k].to(v.dtype) for s in aligned]).mean(0) if v.is_floating_point() else v.clone()
    return out


def canonical_reference(state_dicts, layout: Layout, refine: int = 20, seed: int = 0, normalize: bool = False) -> dict:
    """One point of weight space to align a whole population of ``layout`` networks to.

    Starts from the first network; each of at most ``refine`` rounds aligns every network to the
    current reference by weight matching and replaces the reference by their mean (as k-means does
    with one centroid), so that no single network's arbitrary neuron order decides the canonical one.
    Rounds stop early once no network changes its alignment. Integer tensors are the first network's.

    Args:
        state_dicts: One or more state_dicts (or modules) of ``layout``, e.g. a sample of a zoo's training split.
        layout: Their layout.
        refine: Most align-and-average rounds (0: the first network itself).
        seed: Seed of the group order.
        normalize: As in :func:`align`.

    Raises:
        LayoutMismatchError: When a network does not match ``layout``.
        ValueError: No networks, or a negative ``refine``.
    """
    sds = [_state(s, layout, f"network {i}") for i, s in enumerate(state_dicts)]
    if not sds:
        raise ValueError("canonical_reference needs at least one network")
    if refine < 0:
        raise ValueError(f"refine must be >= 0, got {refine}")
    ref = {k: v.clone() for k, v in sds[0].items()}
    previous = None
    for _ in range(refine):
        perms = [weight_matching(ref, s, layout, seed=seed, normalize=normalize, orbit_invariant=True) for s in sds]
        key = [torch.cat([p[g] for g in sorted(p)]) if p else torch.zeros(0) for p in perms]
        if previous is not None and all(torch.equal(a, b) for a, b in zip(key, previous, strict=True)):
            break  # no network changed its alignment: the mean would not change either
        previous = key
        aligned = [apply_symmetry(s, layout, p) for s, p in zip(sds, perms, strict=True)]
        ref = {k: torch.stack([a[k].double() for a in aligned]).mean(0).to(v.dtype) if v.is_floating_point()
               else v.clone() for k, v in sds[0].items()}
    return ref


def canonicalize(state_dicts, layout: Layout, reference=None, refine: int = 20, seed: int = 0,
                 normalize: bool = False) -> tuple[list[dict], dict]:
    """Every network aligned to one reference: a representative of each network's symmetry orbit.

    Weight matching descends from a start computed from permutation-invariant unit statistics only:
    networks that differ only by a neuron permutation come out (barring exact ties) with identical weights,
    and models that read weights position by position (a flat MLP) see one network where there were many.
    Each output computes exactly the function of its input (:func:`graphs.apply_symmetry`).

    Args:
        state_dicts: State_dicts (or modules) of ``layout``.
        layout: Their layout.
        reference: The state_dict to align to; default :func:`canonical_reference` of ``state_dicts``.
        refine: Most rounds of :func:`canonical_reference` when ``reference`` is not given.
        seed: Seed of the group order.
        normalize: As in :func:`align`.

    Returns:
        ``(aligned state_dicts, reference)``.
    """
    sds = [_state(s, layout, f"network {i}") for i, s in enumerate(state_dicts)]
    ref = (canonical_reference(sds, layout, refine, seed, normalize) if reference is None
           else _state(reference, layout, "reference"))
    return [apply_symmetry(s, layout, weight_matching(ref, s, layout, seed=seed, normalize=normalize,
                                                      orbit_invariant=True)) for s in sds], ref


# ------------------------------------------------------------------ checks
def _state(net, layout: Layout, what: str) -> dict[str, torch.Tensor]:
    sd = net.state_dict() if isinstance(net, torch.nn.Module) else dict(net)
    missing = [p.name for p in layout.params if p.name not in sd]
    if missing:
        raise LayoutMismatchError(f"{what} has no tensor {missing[0]!r} of the layout ({len(missing)} missing); "
                                  "is it a network of this architecture?")
    for p in layout.params:
        if tuple(sd[p.name].shape) != p.shape:
            raise LayoutMismatchError(f"{what}: {p.name!r} has shape {tuple(sd[p.name].shape)}, the layout says "
                                      f"{p.shape}; is it a network of this architecture?")
    return {k: v.detach() for k, v in sd.items()}


def _weight_items(ref: Mapping, other: Mapping, layout: Layout, normalize: bool = False) -> list[_Item]:
    """The parameters; buffers (running statistics) only where they carry a group no parameter carries."""
    covered = {g for p in layout.params if not p.is_buffer for lab in p.axes for g in label_atoms(lab)}
    chosen = [p for p in layout.params
              if not p.is_buffer or not {g for lab in p.axes for g in label_atoms(lab)} <= covered]
    items = []
    for p in chosen:
        r, o = ref[p.name].double(), other[p.name].double()
        if normalize:  # <r, o> / (|r| |o|): the scale moves onto both sides
            r, o = r / r.norm().clamp(min=1e-300), o / o.norm().clamp(min=1e-300)
        items.append(_Item(r, o, p.axes))
    return items


# ------------------------------------------------------------------ the descent
def _best_descent(items, layout, groups, rng, max_sweeps) -> Symmetry:
    """Descent from the identity and from the invariant-statistics start; the better objective wins."""
    ident = {g: torch.arange(layout.groups[g].size) for g in groups}
    if not groups:
        return ident
    runs = [_descent(items, layout, groups, ident, rng, max_sweeps),
            _descent(items, layout, groups, _invariant_start(items, layout, groups), rng, max_sweeps)]
    scores = [_objective(items, layout, p) for p in runs]
    return runs[int(np.argmax(scores))]


def _descent(items, layout, groups, start, rng, max_sweeps) -> Symmetry:
    perm = {g: p.clone() for g, p in start.items()}
    occ = {g: _occurrences(items, layout, g) for g in groups}
    for _ in range(max_sweeps):
        improved = False
        for g in rng.permutation(np.array(groups, dtype=np.int64)):
            g = int(g)
            if not occ[g]:
                continue
            sim = _group_similarity(items, layout, g, occ[g], perm)
            old = float(sim[torch.arange(sim.shape[0]), perm[g]].sum())
            rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
            new = float(sim.numpy()[rows, cols].sum())
            if new > old + 1e-12 * max(1.0, abs(old)):
                perm[g] = torch.as_tensor(cols, dtype=torch.long)
                improved = True
        if not improved:
            break
    return perm


def _group_similarity(items, layout, g, occ, perm) -> torch.Tensor:
    """``S[i, j]``: similarity of reference unit ``i`` with ``other`` unit ``j`` of group ``g``.

    Other groups are held at ``perm``; along the axis being scored ``g`` itself is left unpermuted.
    """
    n = layout.groups[g].size
    sim = torch.zeros(n, n, dtype=torch.float64)
    without = {k: v for k, v in perm.items() if k != g}
    for k, ax, pos in occ:
        it = items[k]
        o = it.other
        for a, lab in enumerate(it.axes):
            o = _permuted(o, a, layout, lab, without if a == ax else perm)
        r_mat = it.ref.movedim(ax, 0)[pos.reshape(-1)].reshape(n, -1).double()
        o_mat = o.movedim(ax, 0)[pos.reshape(-1)].reshape(n, -1).double()
        sim += r_mat @ o_mat.T
    return sim


def _objective(items, layout, perm) -> float:
    total = 0.0
    for it in items:
        o = it.other
        for a, lab in enumerate(it.axes):
            o = _permuted(o, a, layout, lab, perm)
        total += float((it.ref.double() * o.double()).sum())
    return total


def _permuted(t: torch.Tensor, axis: int, layout, label, perm) -> torch.Tensor:
    """``t`` gathered along ``axis`` by :func:`graphs.axis_permutation` (untouched where no group of ``perm`` acts)."""
    if not label_atoms(label) & perm.keys():
        return t
    return t.index_select(axis, axis_permutation(layout, label, perm).to(t.device))


def _invariant_start(items, layout, groups) -> Symmetry:
    """Assign units by statistics of their slices that no other group's permutation changes."""
    start = {}
    for g in groups:
        n = layout.groups[g].size
        fr, fo = [], []
        for k, ax, pos in _occurrences(items, layout, g):
            it = items[k]
            for t, f in ((it.ref, fr), (it.other, fo)):
                s = t.movedim(ax, 0)[pos.reshape(-1)].reshape(n, -1).double()
                f.extend([s.sum(1), (s * s).sum(1), (s ** 3).sum(1), s.abs().sum(1), s.amax(1), s.amin(1)])
        if not fr:
            start[g] = torch.arange(n)
            continue
        a, b = torch.stack(fr, 1), torch.stack(fo, 1)
        scale = torch.cat([a, b]).std(0).clamp(min=1e-12)
        cost = torch.cdist(a / scale, b / scale).numpy()
        _rows, cols = linear_sum_assignment(cost)
        start[g] = torch.as_tensor(cols, dtype=torch.long)
    return start


# ------------------------------------------------------------------ label maps
def _occurrences(items, layout, g) -> list[tuple[int, int, torch.Tensor]]:
    """Every ``(item, axis, positions)`` where group ``g`` labels an axis.

    ``positions[i, t]`` is the ``t``-th index of that axis that belongs to unit ``i``.
    """
    out = []
    for k, it in enumerate(items):
        for ax, lab in enumerate(it.axes):
            if g in label_atoms(lab):
                pos = _unit_positions(layout, lab, g)
                if pos is not None:
                    out.append((k, ax, pos))
    return out


_POS_CACHE: dict = {}


def _unit_positions(layout, label, g) -> torch.Tensor | None:
    """``[n, T]`` positions of each unit of ``g`` along an axis labelled ``label`` (None: ``g`` is a factor twice).

    Derived by the same recursion as :func:`graphs.axis_permutation`, and checked against it: under any
    permutation ``s`` of ``g``, position ``pos[i, t]`` gathers old position ``pos[s[i], t]``.
    """
    key = (layout.fingerprint, label, g)
    if key in _POS_CACHE:
        return _POS_CACHE[key]
    unit = _unit_of(layout, label, g)
    pos = None
    if unit is not None:
        n = layout.groups[g].size
        order = np.argsort(unit, kind="stable")
        order = order[unit[order] >= 0]
        pos = torch.as_tensor(order.reshape(n, -1), dtype=torch.long)
        s = torch.roll(torch.arange(n), 1)
        idx = axis_permutation(layout, label, {g: s})
        assert torch.equal(idx[pos], pos[s]), f"unit positions of group {g} disagree with axis_permutation"
    _POS_CACHE[key] = pos
    return pos


def _unit_of(layout, label, g) -> np.ndarray | None:
    """Unit of group ``g`` at every index of the axis (-1 where ``g`` plays no part)."""
    tag = label[0]
    if tag == "u":
        return np.full(1, -1)
    if tag == "a":
        n = layout.groups[label[1]].size
        return np.arange(n) if label[1] == g else np.full(n, -1)
    parts = [_unit_of(layout, x, g) for x in label[1]]
    if any(p is None for p in parts):
        return None
    if tag == "c":
        return np.concatenate(parts)
    if sum(bool((p >= 0).any()) for p in parts) > 1:
        return None  # g is two factors of one product: its units are not slices of this axis
    grids = np.meshgrid(*parts, indexing="ij")
    return np.max(np.stack([x.reshape(-1) for x in grids]), axis=0)
