"""Normalization statistics of a zoo's parameters over one split, at three granularities.

* ``tensor``: one mean/std per parameter tensor (per layer), as NFN and Neural Graphs normalize.
* ``orbit``: one mean/std per *symmetry orbit*: entries that some neuron permutation maps onto each
  other share statistics (e.g. a conv kernel offset over all hidden channels, but each input pixel
  of a first layer its own). This is the finest normalization that keeps every symmetry a symmetry.
* ``element``: one mean/std per entry of the flat vector. Finest, but it treats permutable neurons
  differently, so a normalized network's symmetries are no longer exact.

Each kind is stored expanded to ``[num_params]`` so that normalizing is ``(vec - mean) / std``.
Standard deviations below ``1e-12`` (constant entries) are stored as 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass

import numpy as np

import graphs
from datasets.errors import ZooError
from datasets.hdf5 import STAT_KINDS, ZooReader
from datasets.writer import ZooWriter

__all__ = ["NormStats", "compute_stats", "orbit_ids", "read_stats", "register", "write_stats"]


@dataclass(frozen=True)
class NormStats:
    """Per-entry mean and std of one architecture over one split.

    Attributes:
        fingerprint: The architecture.
        split: The split the statistics were computed on.
        num_models: Models of this architecture in that split.
        mean: ``{kind: [num_params] float64}`` for kind in ``tensor``, ``orbit``, ``element``.
        std: Same, standard deviations (never 0).
    """

    fingerprint: str
    split: str
    num_models: int
    mean: dict
    std: dict


def orbit_ids(layout) -> np.ndarray:
    """Symmetry orbit of every entry of the flat vector, as ``[num_params]`` int64 ids (0, 1, ...).

    The orbits of a product of symmetric groups are the connected components of the graph that joins
    ``i`` to ``symmetry_index(perm)[i]`` for generators of each group: a transposition and an n-cycle.
    """
    import torch
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = layout.num_params
    src, dst = [np.arange(n)], [np.arange(n)]
    for group in layout.permutable_groups():
        cycle = torch.roll(torch.arange(group.size), 1)
        swap = torch.arange(group.size)
        swap[[0, 1]] = swap[[1, 0]]
        for perm in (cycle, swap):
            idx = graphs.symmetry_index(layout, {group.id: perm}).numpy()
            moved = np.flatnonzero(idx != np.arange(n))
            src.append(moved)
            dst.append(idx[moved])
    i, j = np.concatenate(src), np.concatenate(dst)
    _, comp = connected_components(coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)), directed=False)
    _, first = np.unique(comp, return_index=True)  # renumber by first entry: deterministic ids
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[comp]


def split_digest(indices: np.ndarray) -> str:
    """A short digest of a split's model indices (statistics record it to detect re-splits)."""
    return hashlib.sha1(np.asarray(indices, np.int64).tobytes()).hexdigest()[:16]


def compute_stats(reader: ZooReader, split: str = "train", block: int = 1024) -> dict[str, NormStats]:
    """Statistics of every architecture with models in ``split``, streaming ``block`` rows at a time."""
    indices = reader.split(split)
    out = {}
    for a, fp in enumerate(reader.fingerprints):
        rows = reader.model_row[indices[reader.model_arch[indices] == a]]
        if not len(rows):
            continue
        layout = reader.layout(fp)
        s1 = np.zeros(layout.num_params)
        s2 = np.zeros(layout.num_params)
        for start in range(0, len(rows), block):
            x = reader.read_rows(fp, np.sort(rows[start:start + block]))[0].astype(np.float64)
            s1 += x.sum(0)
            s2 += np.square(x).sum(0)
        count = np.full(layout.num_params, float(len(rows)))
        tensor_id = np.repeat(np.arange(len(layout.params)), [p.numel for p in layout.params])
        mean, std = {}, {}
        for kind, ids in (("tensor", tensor_id), ("orbit", orbit_ids(layout)), ("element", None)):
            if ids is None:
                m, sq = s1 / count, s2 / count
            else:
                n = np.bincount(ids, count)
                m, sq = (np.bincount(ids, s1) / n)[ids], (np.bincount(ids, s2) / n)[ids]
            sd = np.sqrt(np.maximum(sq - m * m, 0.0))
            mean[kind], std[kind] = m, np.where(sd > 1e-12, sd, 1.0)
        out[fp] = NormStats(fp, split, len(rows), mean, std)
    return out


def write_stats(path: str | os.PathLike, split: str = "train") -> dict[str, NormStats]:
    """Compute statistics over ``split`` and store them in the zoo (a crash-safe rewrite)."""
    with ZooReader(path) as reader:
        stats = compute_stats(reader, split)
        digest = split_digest(reader.split(split))
    with ZooWriter(path, mode="a") as writer:
        for fp, st in stats.items():
            arrays = {f"{k}_{w}": getattr(st, w)[k] for k in STAT_KINDS for w in ("mean", "std")}
            writer.set_stats(fp, arrays, {"split": split, "split_digest": digest, "num_models": st.num_models})
    return stats


def read_stats(reader: ZooReader, fingerprint: str) -> NormStats:
    """Stored statistics of one architecture; errors say how to (re)compute missing or stale ones."""
    got = reader.stats(fingerprint)
    fix = f"compute them with `python -m datasets stats {reader.path}`"
    if got is None:
        raise ZooError(f"{reader.path} has no normalization statistics for architecture {fingerprint}; {fix}")
    split = got["split"]
    if split not in reader.split_names or split_digest(reader.split(split)) != got["split_digest"]:
        raise ZooError(f"{reader.path}: the normalization statistics were computed on an earlier split {split!r}; "
                       + fix)
    return NormStats(fingerprint, split, int(got["num_models"]), {k: got[f"{k}_mean"] for k in STAT_KINDS},
                     {k: got[f"{k}_std"] for k in STAT_KINDS})


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stats`` command."""
    p = subparsers.add_parser("stats", help="compute and store parameter normalization statistics",
                              description="Compute per-tensor, per-orbit and per-entry mean/std of the parameters "
                                          "over one split and store them in the zoo.")
    p.add_argument("zoo", help="zoo .h5 file")
    p.add_argument("--split", default="train", help="split to compute the statistics on (default: train)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    stats = write_stats(args.zoo, args.split)
    for fp, st in stats.items():
        print(f"{fp}: statistics over {st.num_models} models of split {st.split!r}")
    return 0
