"""Sampling the architecture space: an in-distribution (ID) prior and DeepNets-1M-style OOD shifts.

ID nets (``kind="id"``: train, val and test) are small enough to train many times on a CPU: on 8x8
digits they have a few thousand to about 50k parameters. Every ID net has a normalization layer
(mostly BatchNorm). The out-of-distribution kinds each change one property beyond the ID ranges,
everything else keeps the ID prior:

* ``wide``: every width (stage channels, hidden units, token dim) drawn from :data:`WIDE_WIDTHS`,
  beyond the ID maximum of :data:`ID_WIDTHS`;
* ``deep``: more cells / hidden layers / blocks (:data:`DEEP_DEPTHS`) than :data:`ID_DEPTHS` allows;
* ``dense``: ``cell`` nets with more nodes per cell (:data:`DENSE_NODES`) than :data:`ID_NODES`;
* ``bnfree``: no normalization anywhere (ID nets always have one).

Nets over the parameter cap of their kind (:func:`param_cap`) or under :data:`MIN_PARAMS` are redrawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from datasets.archs.build import build_module
from datasets.archs.space import ACTIVATIONS, CELL_OPS, FAMILIES, PARAM_OPS, ArchSpec
from datasets.errors import ZooError

__all__ = ["DEEP_DEPTHS", "DENSE_NODES", "FAMILY_WEIGHTS", "ID_DEPTHS", "ID_NODES", "ID_NORMS", "ID_WIDTHS", "KINDS",
           "MAX_ID_PARAMS", "MAX_OOD_PARAMS", "MAX_REDUCTIONS", "MIN_ARCHS", "MIN_PARAMS", "OOD_KINDS", "WIDE_WIDTHS",
           "param_cap", "sample_archs", "sample_spec"]

ID_WIDTHS = {"cell": (8, 32), "mlp": (16, 64), "vit": (16, 48)}
"""Inclusive ID width ranges (stage channels, hidden units, token dim), sampled in steps of :data:`_STEP`."""
WIDE_WIDTHS = {"cell": (40, 64), "mlp": (96, 128), "vit": (64, 96)}
"""Inclusive width ranges of ``wide`` nets: every width is beyond the ID maximum."""
ID_DEPTHS = {"cell": (1, 4), "mlp": (1, 4), "vit": (1, 2)}
"""Inclusive ID ranges of cells (over all stages), hidden layers and transformer blocks."""
DEEP_DEPTHS = {"cell": (5, 8), "mlp": (5, 8), "vit": (3, 4)}
"""Inclusive depth ranges of ``deep`` nets."""
ID_NODES = (2, 4)
"""Inclusive range of nodes per cell (the input node not counted) of ID nets."""
DENSE_NODES = (5, 7)
"""Inclusive range of nodes per cell of ``dense`` nets."""
MAX_REDUCTIONS = 2
"""Stride-2 reductions of ``cell`` nets: at most this many, and never below 2 positions per axis."""
ID_NORMS = {"cell": {"bn": 0.85, "gn": 0.15}, "mlp": {"bn": 0.6, "ln": 0.4}, "vit": {"ln": 1.0}}
"""Normalization probabilities of ID nets (``bnfree`` nets use ``"none"``)."""
FAMILY_WEIGHTS = {"cell": 0.6, "mlp": 0.2, "vit": 0.2}
"""Relative probability of each family (renormalized over the families asked for)."""
MAX_ID_PARAMS = 50_000
"""Parameter cap of ID nets, plus room for a width-64 input layer (see :func:`param_cap`)."""
MAX_OOD_PARAMS = 400_000
"""Parameter cap of OOD nets, plus room for a width-128 input layer."""
MIN_PARAMS = 1_000
"""Nets with fewer trainable parameters are redrawn (a lone width-8 cell of pools is not worth training)."""
OOD_KINDS = ("wide", "deep", "dense", "bnfree")
"""Out-of-distribution kinds, in the order :func:`sample_archs` stores them."""
KINDS = ("id",) + OOD_KINDS
MIN_ARCHS = 10
"""Fewest ID nets :func:`sample_archs` accepts (so that val and test are not empty)."""

_STEP = 8
_OP_WEIGHTS = {"conv3x3": 0.2, "conv5x5": 0.1, "sep_conv3x3": 0.2, "dil_conv3x3": 0.15, "max_pool3x3": 0.1,
               "avg_pool3x3": 0.1, "identity": 0.15}
_PATCHES = {1: (2, 4, 5, 8, 10), 2: (2, 4, 8)}
_TOKENS = (4, 64)  # inclusive range of ViT token counts
_MAX_TRIES = 200


def param_cap(input_shape: Sequence[int], kind: str = "id") -> int:
    """Most trainable parameters a net of ``kind`` may have on inputs of ``input_shape``."""
    in_features = math.prod(input_shape)
    if kind == "id":
        return MAX_ID_PARAMS + ID_WIDTHS["mlp"][1] * in_features
    return MAX_OOD_PARAMS + WIDE_WIDTHS["mlp"][1] * in_features


def _widths(rng: np.random.Generator, family: str, kind: str, n: int) -> tuple[int, ...]:
    lo, hi = (WIDE_WIDTHS if kind == "wide" else ID_WIDTHS)[family]
    return tuple(int(w) for w in rng.choice(np.arange(lo, hi + 1, _STEP), size=n))


def _depth(rng: np.random.Generator, family: str, kind: str) -> int:
    lo, hi = (DEEP_DEPTHS if kind == "deep" else ID_DEPTHS)[family]
    return int(rng.integers(lo, hi + 1))


def _norm(rng: np.random.Generator, family: str, kind: str) -> str:
    if kind == "bnfree":
        return "none"
    names, p = zip(*ID_NORMS[family].items(), strict=True)
    return str(rng.choice(names, p=np.array(p) / sum(p)))


def _genotype(rng: np.random.Generator, n_nodes: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    ops, p = zip(*_OP_WEIGHTS.items(), strict=True)
    assert set(ops) == set(CELL_OPS)
    while True:
        nodes = []
        for j in range(1, n_nodes + 1):
            n_in = 2 if j > 1 and rng.random() < 0.4 else 1
            inputs = tuple(sorted(int(i) for i in rng.choice(j, size=n_in, replace=False)))
            nodes.append((str(rng.choice(ops, p=np.array(p) / sum(p))), inputs))
        if any(op in PARAM_OPS for op, _ in nodes):  # every cell learns something
            return tuple(nodes)


def _sample_cell(rng: np.random.Generator, input_shape: tuple[int, ...], num_classes: int, kind: str) -> ArchSpec:
    depth = _depth(rng, "cell", kind)
    fit = int(math.log2(min(input_shape[1:]))) - 1  # reductions that keep >= 2 positions per axis
    n_stages = int(rng.integers(1, min(MAX_REDUCTIONS + 1, max(fit, 0) + 1, depth) + 1))
    cells = 1 + rng.multinomial(depth - n_stages, np.full(n_stages, 1 / n_stages))
    lo, hi = DENSE_NODES if kind == "dense" else ID_NODES
    return ArchSpec("cell", input_shape, num_classes, tuple(sorted(_widths(rng, "cell", kind, n_stages))),
                    norm=_norm(rng, "cell", kind), cells_per_stage=tuple(int(c) for c in cells),
                    genotype=_genotype(rng, int(rng.integers(lo, hi + 1))),
                    wiring=str(rng.choice(("sum", "concat"), p=(0.6, 0.4))), stem_kernel=int(rng.choice((3, 5))))


def _sample_mlp(rng: np.random.Generator, input_shape: tuple[int, ...], num_classes: int, kind: str) -> ArchSpec:
    depth = _depth(rng, "mlp", kind)
    return ArchSpec("mlp", input_shape, num_classes, _widths(rng, "mlp", kind, depth), norm=_norm(rng, "mlp", kind),
                    activation=str(rng.choice(ACTIVATIONS)))


def _sample_vit(rng: np.random.Generator, input_shape: tuple[int, ...], num_classes: int, kind: str) -> ArchSpec:
    spatial = input_shape[1:]
    patches = [p for p in _PATCHES[len(spatial)] if p <= min(spatial)
               and _TOKENS[0] <= math.prod(s // p for s in spatial) <= _TOKENS[1]]
    if not patches:  # tiny or huge inputs: the patch whose token count is closest to the range
        patches = [min((p for p in _PATCHES[len(spatial)] if p <= min(spatial)), default=1,
                       key=lambda p: abs(math.log(math.prod(s // p for s in spatial) / _TOKENS[1])))]
    (dim,) = _widths(rng, "vit", kind, 1)
    heads = int(rng.choice([h for h in (1, 2, 3, 4) if dim % h == 0]))
    return ArchSpec("vit", input_shape, num_classes, (dim,), norm=_norm(rng, "vit", kind),
                    activation=str(rng.choice(ACTIVATIONS, p=(0.25, 0.5, 0.25))), patch=int(rng.choice(patches)),
                    heads=heads, blocks=_depth(rng, "vit", kind), mlp_ratio=int(rng.choice((1, 2))),
                    cls_token=bool(rng.random() < 0.5))


_SAMPLERS = {"cell": _sample_cell, "mlp": _sample_mlp, "vit": _sample_vit}


def _check_families(families: Sequence[str]) -> tuple[str, ...]:
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ZooError(f"unknown or no architecture families {unknown or list(families)}; choose from {FAMILIES}, "
                       "e.g. --families cell,mlp")
    return families


def sample_spec(rng: np.random.Generator, input_shape: Sequence[int], num_classes: int, kind: str = "id",
                families: Sequence[str] = FAMILIES) -> ArchSpec:
    """Draw one architecture of ``kind`` (see the module docstring) under the kind's parameter cap.

    Args:
        rng: The random stream (advanced by the draw).
        input_shape: ``(C, L)`` or ``(C, H, W)``.
        num_classes: Output logits.
        kind: One of :data:`KINDS`.
        families: Families to draw from (weighted by :data:`FAMILY_WEIGHTS`); ``dense`` draws ``cell`` only.

    Raises:
        ZooError: Unknown kind or family, ``dense`` without ``cell``, a malformed input shape, or no net
            under the parameter cap after many draws.
    """
    families = _check_families(families)
    if kind not in KINDS:
        raise ZooError(f"unknown architecture kind {kind!r}; choose one of {KINDS}")
    if kind == "dense":
        if "cell" not in families:
            raise ZooError("'dense' nets are cell nets with more nodes per cell; include the 'cell' family")
        families = ("cell",)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 3) or min(shape) <= 0:
        raise ZooError(f"input shape must be (C, L) or (C, H, W) with positive sizes, got {tuple(input_shape)}")
    weights = np.array([FAMILY_WEIGHTS[f] for f in families])
    cap = param_cap(shape, kind)
    for _ in range(_MAX_TRIES):
        family = str(rng.choice(families, p=weights / weights.sum()))
        spec = _SAMPLERS[family](rng, shape, num_classes, kind)
        if MIN_PARAMS <= sum(p.numel() for p in build_module(spec).parameters()) <= cap:
            return spec
    raise ZooError(f"no {kind} net of families {families} for input {shape} has {MIN_PARAMS} to {cap} parameters after "
                   f"{_MAX_TRIES} draws; use a smaller input or other families")


def sample_archs(n: int, input_shape: Sequence[int], num_classes: int, seed: int = 0, n_ood: int = 50,
                 families: Sequence[str] = FAMILIES) -> tuple[list[ArchSpec], dict[str, np.ndarray]]:
    """Draw ``n`` distinct ID nets and ``n_ood`` distinct nets of each OOD kind, with fixed splits.

    Specs are distinct by :meth:`ArchSpec.to_json` across all splits. Each kind has its own random
    stream, so the ID nets do not depend on ``n_ood``, and the first ``k`` ID nets do not depend on ``n``.

    Args:
        n: ID nets (at least :data:`MIN_ARCHS`), split 80/10/10 into ``train``/``val``/``test``.
        input_shape: ``(C, L)`` or ``(C, H, W)``.
        num_classes: Output logits.
        seed: Seed of every draw and of the split.
        n_ood: Nets of each kind in :data:`OOD_KINDS` (``dense`` stays empty without the ``cell`` family).
        families: Families to draw from.

    Returns:
        ``(specs, splits)``: ID specs first, then each OOD kind in order; ``splits`` maps ``train``,
        ``val``, ``test`` and each OOD kind to sorted int64 indices into ``specs`` (disjoint, covering all).
    """
    families = _check_families(families)
    if n < MIN_ARCHS:
        raise ZooError(f"sample at least {MIN_ARCHS} architectures (got {n}) so that val and test are not empty")
    if n_ood < 0:
        raise ZooError(f"the number of OOD nets per kind must be >= 0, got {n_ood}")
    specs: list[ArchSpec] = []
    seen: set[str] = set()

    def draw(count: int, kind: str, stream: int) -> np.ndarray:
        rng = np.random.default_rng([seed, stream])
        start = len(specs)
        for _ in range(count * 50):
            if len(specs) - start == count:
                break
            spec = sample_spec(rng, input_shape, num_classes, kind, families)
            key = spec.to_json()
            if key not in seen:
                seen.add(key)
                specs.append(spec)
        if len(specs) - start < count:
            raise ZooError(f"found only {len(specs) - start} distinct {kind} architectures of families {families}, "
                           f"{count} asked for; ask for fewer or add families")
        return np.arange(start, len(specs), dtype=np.int64)

    ids = draw(n, "id", 0)
    perm = np.random.default_rng([seed, len(KINDS)]).permutation(ids)
    n_hold = max(1, round(0.1 * n))
    splits = {"train": np.sort(perm[2 * n_hold:]), "val": np.sort(perm[:n_hold]),
              "test": np.sort(perm[n_hold:2 * n_hold])}
    for stream, kind in enumerate(OOD_KINDS, start=1):
        applies = kind != "dense" or "cell" in families
        splits[kind] = draw(n_ood if applies else 0, kind, stream)
    return specs, splits
