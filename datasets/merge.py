"""``merge``: concatenate zoos into a new one (models in input order, label columns united).

Label columns present in only some inputs are filled with the missing value (NaN, ``""``); an int
column that some input lacks becomes a float column. When every input has splits with the same
names, the merged splits are their union (so test models stay test models); otherwise the merged
zoo gets fresh default splits.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from tqdm import tqdm

from datasets.errors import LabelError, ZooError
from datasets.hdf5 import ZooReader
from datasets.splits import DEFAULT_SPLIT, SplitSpec
from datasets.writer import ZooWriter

__all__ = ["merge_zoos", "register"]


def _merged_kinds(readers: list[ZooReader]) -> dict[str, str]:
    kinds: dict[str, set] = {}
    for r in readers:
        for name in r.label_names:
            kinds.setdefault(name, set()).add(r.label_kind(name))
    out = {}
    for name, ks in kinds.items():
        if "str" in ks and len(ks) > 1:
            raise LabelError(f"label {name!r} is text in some inputs and numeric in others; rename it in one of them")
        everywhere = all(name in r.label_names for r in readers)
        out[name] = "str" if ks == {"str"} else "int" if ks == {"int"} and everywhere else "float"
    return out


def merge_zoos(inputs: list[str | os.PathLike], out: str | os.PathLike, block: int = 4096,
               progress: bool = True) -> int:
    """Write the models of ``inputs`` (in order) into a new zoo ``out``; return its number of models."""
    out = os.path.abspath(os.fspath(out))
    if out in {os.path.abspath(os.fspath(p)) for p in inputs}:
        raise ZooError(f"the output {out} is also an input; merge into a new file")
    readers = [ZooReader(p) for p in inputs]
    try:
        kinds = _merged_kinds(readers)
        names = {r.split_names for r in readers}
        keep_splits = len(names) == 1 and names != {()}
        total = sum(r.num_models for r in readers)
        bar = tqdm(total=total, unit="model", desc="merge", disable=not progress or None)
        with ZooWriter(out, "w", label_kinds=kinds, default_split=None if keep_splits else DEFAULT_SPLIT) as writer:
            for r in readers:
                columns = {n: r.labels(n) for n in r.label_names}
                for start in range(0, r.num_models, block):
                    stop = min(start + block, r.num_models)
                    arch = r.model_arch[start:stop]
                    cuts = np.flatnonzero(np.diff(arch)) + 1  # runs of one architecture
                    for lo, hi in zip(np.r_[0, cuts] + start, np.r_[cuts, stop - start] + start, strict=True):
                        fp = r.fingerprints[arch[lo - start]]
                        params, ints = r.read_rows(fp, r.model_row[lo:hi])
                        labels = {n: list(c[lo:hi]) for n, c in columns.items()}
                        writer.add_rows(r.layout(fp), params, ints, labels)
                    bar.update(stop - start)
            if keep_splits:
                offsets = np.cumsum([0] + [r.num_models for r in readers])
                split_names = readers[0].split_names
                splits = {n: np.concatenate([r.split(n) + off for r, off in zip(readers, offsets[:-1], strict=True)])
                          for n in split_names}
                info = readers[0].split_info()
                spec = SplitSpec(split_names, info["fractions"], info["seed"], info["group_by"])
                writer.set_splits(splits, spec)
            bar.close()
            return writer.num_models
    finally:
        for r in readers:
            r.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` command."""
    p = subparsers.add_parser("merge", help="merge zoos into a new one",
                              description="Concatenate zoos (any architectures) into a new zoo file.")
    p.add_argument("inputs", nargs="+", metavar="ZOO", help="input zoos, then the output file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if len(args.inputs) < 3:
        raise ZooError("merge needs at least two input zoos and an output: merge A.h5 B.h5 OUT.h5")
    *inputs, out = args.inputs
    n = merge_zoos(inputs, out)
    print(f"{out}: {n} models from {len(inputs)} zoos")
    return 0
