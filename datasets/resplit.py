"""``split``: replace a zoo's stored splits (a crash-safe rewrite; normalization statistics are dropped)."""

from __future__ import annotations

import argparse
import os

import numpy as np

from datasets.errors import ZooError
from datasets.splits import SplitSpec, make_splits
from datasets.writer import ZooWriter

__all__ = ["register", "resplit"]


def resplit(path: str | os.PathLike, spec: SplitSpec) -> dict[str, np.ndarray]:
    """Split every model of the zoo at ``path`` as ``spec`` says and store the result."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no zoo file at {path}")
    with ZooWriter(path, mode="a", default_split=None) as writer:
        groups = None
        if spec.group_by is not None:
            groups = writer.labels(spec.group_by) if spec.group_by in writer.label_names else None
            if groups is None:
                raise ZooError(f"{path} has no label {spec.group_by!r} to group by; it has {list(writer.label_names)}")
        splits = make_splits(writer.num_models, spec, groups)
        writer.set_splits(splits, spec)
    return splits


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``split`` command."""
    p = subparsers.add_parser("split", help="re-split a zoo into train/val/test",
                              description="Replace the stored splits. Deterministic: the same seed, fractions and "
                                          "grouping give the same splits.")
    p.add_argument("zoo", help="zoo .h5 file")
    p.add_argument("--names", default="train,val,test", help="comma-separated split names (default: train,val,test)")
    p.add_argument("--fractions", default="0.8,0.1,0.1", help="comma-separated fractions summing to 1")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    p.add_argument("--group-by", default=None, metavar="LABEL",
                   help="keep models with equal LABEL (e.g. a training run) in one split")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        fractions = tuple(float(x) for x in args.fractions.split(","))
        spec = SplitSpec(tuple(n.strip() for n in args.names.split(",")), fractions, args.seed, args.group_by)
    except ValueError as exc:
        raise ZooError(f"bad split arguments: {exc}") from exc
    splits = resplit(args.zoo, spec)
    print(f"{args.zoo}: " + ", ".join(f"{n} {len(v)}" for n, v in splits.items()))
    return 0
