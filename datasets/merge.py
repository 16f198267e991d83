"""``merge``: concatenate zoos into a new one (models in input order, label columns united).

Label columns present in only some inputs are filled with the missing value (NaN, ``""``); an int
column that some input lacks becomes a float column. When every input has splits with the same
names, the merged splits are their union (so test models stay test models); otherwise the merged
zoo gets fresh default splits.

The output must be a new file (``--overwrite`` replaces an existing one atomically). An input given
twice is refused, and so is a model of one input whose weights (parameters and integer buffers, same
architecture) equal those of a model of an earlier input: a copy of a zoo, or a zoo and one appended
to it, would otherwise count the same networks twice (and could put one network in both the train
and the test split). ``--dedupe`` keeps the first copy of each instead, with its labels.

Stored programs (the networks' functions, see :mod:`datasets.hdf5`) come along: each input's
programs are added to the merged zoo once (the same function of the same architecture in two inputs
is stored once) and every model keeps its program; a model without one stays without.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import warnings

import numpy as np
from tqdm import tqdm

from datasets.errors import LabelError, ZooError, ZooWarning
from datasets.hdf5 import ZooReader
from datasets.splits import DEFAULT_SPLIT, SplitSpec
from datasets.writer import ZooWriter
from graphs.cli import check_output

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


def _row_hashes(fp: str, params: np.ndarray, ints: np.ndarray) -> list[bytes]:
    return [hashlib.sha1(fp.encode() + p.tobytes() + i.tobytes()).digest() for p, i in zip(params, ints, strict=True)]


def _check_inputs(inputs: list[str | os.PathLike], out: str) -> None:
    real = [os.path.realpath(os.fspath(p)) for p in inputs]
    if os.path.realpath(out) in real:
        raise ZooError(f"the output {out} is also an input; merge into a new file")
    twice = sorted({os.fspath(inputs[i]) for i, p in enumerate(real) if real.count(p) > 1})
    if twice:
        raise ZooError(f"{', '.join(twice)} is given more than once; give each input zoo once")


def _carry_programs(reader: ZooReader, writer: ZooWriter) -> np.ndarray:
    """Add the programs of ``reader`` to ``writer``: ``out[i + 1]`` is the merged index of program ``i``.

    ``out[0]`` is -1, so ``out[model_program + 1]`` maps a model without a program to -1.
    """
    out = [-1]
    for i, info in enumerate(reader.programs):
        out.append(writer.add_program(reader.layout(info["fingerprint"]), reader.program_bytes(i), name=info["name"]))
    return np.asarray(out, np.int64)


def _add_rows(writer: ZooWriter, layout, params: np.ndarray, ints: np.ndarray, columns: dict[str, np.ndarray],
              programs: np.ndarray) -> None:
    """Write rows of one architecture, one ``add_rows`` per run of rows with the same program."""
    cuts = np.r_[0, np.flatnonzero(np.diff(programs)) + 1, len(programs)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        writer.add_rows(layout, params[a:b], ints[a:b], {n: list(c[a:b]) for n, c in columns.items()},
                        program=int(programs[a]))


def merge_zoos(inputs: list[str | os.PathLike], out: str | os.PathLike, block: int = 4096,
               progress: bool = True, overwrite: bool = False, dedupe: bool = False) -> int:
    """Write the models of ``inputs`` (in order) into a new zoo ``out``; return its number of models.

    Args:
        inputs: Zoo files, each once.
        out: The new zoo (refused if it exists, unless ``overwrite``: then replaced atomically).
        block: Models read per step.
        progress: Progress bar.
        overwrite: Replace an existing ``out``.
        dedupe: Skip models whose weights equal a model of an earlier input (with a
            :class:`~datasets.errors.ZooWarning`) instead of refusing them.

    Raises:
        ValueError: ``out`` exists (unless ``overwrite``) or its folder does not.
        ZooError: ``out`` is an input, an input is given twice, inputs share models (unless ``dedupe``),
            or label columns conflict.
    """
    out = os.path.abspath(os.fspath(out))
    _check_inputs(inputs, out)
    check_output(out, overwrite, what="merged zoo")
    readers = [ZooReader(p) for p in inputs]
    try:
        kinds = _merged_kinds(readers)
        names = {r.split_names for r in readers}
        keep_splits = len(names) == 1 and names != {()}
        total = sum(r.num_models for r in readers)
        seen: dict[bytes, tuple[int, int]] = {}  # weights hash -> (input, model) of its first copy
        duplicates: list[tuple[int, int, int, int]] = []  # (input, model, earlier input, its model)
        new_index = [np.full(r.num_models, -1, np.int64) for r in readers]
        bar = tqdm(total=total, unit="model", desc="merge", disable=not progress or None)
        with ZooWriter(out, "w", label_kinds=kinds, default_split=None if keep_splits else DEFAULT_SPLIT) as writer:
            for j, r in enumerate(readers):
                columns = {n: r.labels(n) for n in r.label_names}
                programs = _carry_programs(r, writer)  # input program index -> merged index (-1 -> -1)
                mine: dict[bytes, tuple[int, int]] = {}
                for start in range(0, r.num_models, block):
                    stop = min(start + block, r.num_models)
                    arch = r.model_arch[start:stop]
                    cuts = np.flatnonzero(np.diff(arch)) + 1  # runs of one architecture
                    for lo, hi in zip(np.r_[0, cuts] + start, np.r_[cuts, stop - start] + start, strict=True):
                        fp = r.fingerprints[arch[lo - start]]
                        params, ints = r.read_rows(fp, r.model_row[lo:hi])
                        keep = np.ones(hi - lo, bool)
                        for k, h in enumerate(_row_hashes(fp, params, ints)):
                            if h in seen:
                                duplicates.append((j, lo + k, *seen[h]))
                                keep[k] = False
                            else:
                                mine.setdefault(h, (j, lo + k))
                        first = writer.num_models
                        new_index[j][np.arange(lo, hi)[keep]] = np.arange(first, first + int(keep.sum()))
                        if keep.any():
                            _add_rows(writer, r.layout(fp), params[keep], ints[keep],
                                      {n: c[lo:hi][keep] for n, c in columns.items()},
                                      programs[r.model_program[lo:hi][keep] + 1])
                    bar.update(stop - start)
                seen.update(mine)  # a zoo's own repeated models are its business; only inputs are compared
            if duplicates and not dedupe:
                j, i, k, m = duplicates[0]
                raise ZooError(f"{len(duplicates)} models of later inputs have the same weights as models of earlier "
                               f"ones (first: {os.fspath(inputs[j])} model {i} = {os.fspath(inputs[k])} model {m}); "
                               "the inputs overlap (a copy, or a zoo and one appended to it): drop one, or pass "
                               "--dedupe to keep the first copy of each")
            if keep_splits:
                split_names = readers[0].split_names
                splits = {}
                for n in split_names:
                    idx = np.concatenate([new_index[j][r.split(n)] for j, r in enumerate(readers)])
                    splits[n] = np.sort(idx[idx >= 0])
                info = readers[0].split_info()
                spec = SplitSpec(split_names, info["fractions"], info["seed"], info["group_by"])
                writer.set_splits(splits, spec)
            bar.close()
            n_out = writer.num_models
    finally:
        for r in readers:
            r.close()
    if duplicates:
        per_input = {}
        for j, *_ in duplicates:
            per_input[os.fspath(inputs[j])] = per_input.get(os.fspath(inputs[j]), 0) + 1
        warnings.warn(ZooWarning(f"skipped {len(duplicates)} models whose weights equal a model of an earlier input ("
                                 + ", ".join(f"{n} from {p}" for p, n in per_input.items()) + ")"), stacklevel=2)
    return n_out


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` command."""
    p = subparsers.add_parser("merge", help="merge zoos into a new one",
                              description="Concatenate zoos (any architectures) into a new zoo file.")
    p.add_argument("inputs", nargs="+", metavar="ZOO", help="input zoos, then the output file (a new file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (atomically)")
    p.add_argument("--dedupe", action="store_true",
                   help="skip models whose weights equal a model of an earlier input instead of refusing them")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if len(args.inputs) < 3:
        raise ZooError("merge needs at least two input zoos and an output: merge A.h5 B.h5 OUT.h5")
    *inputs, out = args.inputs
    n = merge_zoos(inputs, out, overwrite=args.overwrite, dedupe=args.dedupe)
    print(f"{out}: {n} models from {len(inputs)} zoos")
    return 0
