"""``canonicalize``: a copy of a zoo with every model aligned to a reference of its architecture.

Each stored row is replaced by the member of its symmetry orbit that weight matching brings closest to
the reference (:class:`datasets.transforms.Canonicalize`): every model computes exactly the function it
did, and models that differ only by a neuron permutation become one row. The references come from one
split (normally ``train``), so no test model shapes them; they are stored beside each architecture
(``/arch/<fingerprint>/canonical_reference``) with how they were made, so that new networks can be
aligned the same way. Labels, splits, programs and every other part of the zoo are copied unchanged;
normalization statistics are dropped (recompute them with ``python -m datasets stats``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid

import numpy as np
import torch
from tqdm import tqdm

from datasets.dataset import ZooDataset
from datasets.errors import ZooError
from datasets.hdf5 import ZooReader
from datasets.transforms import Canonicalize
from datasets.writer import ZooWriter
from graphs.cli import check_output

__all__ = ["canonicalize_zoo", "register"]


def canonicalize_zoo(path: str | os.PathLike, out: str | os.PathLike, reference_split: str | None = "train",
                     refine: int = 20, sample: int = 256, overwrite: bool = False, block: int = 4096,
                     progress: bool = True) -> Canonicalize:
    """Write ``out``: the zoo at ``path`` with every model aligned to its architecture's reference.

    Args:
        path: The input zoo (left unchanged).
        out: The new zoo (refused if it exists unless ``overwrite``; then replaced atomically).
        reference_split: The split the references are computed from (None: every model).
        refine: Most align-and-average rounds (:func:`graphs.canonical_reference`).
        sample: Models per architecture the references are computed from.
        overwrite: Replace an existing ``out``.
        block: Rows read and written at a time.
        progress: Show a progress bar.

    Returns:
        The transform used (its references align new networks the same way).

    Raises:
        ZooError: ``out`` is ``path``, or the reference split does not exist.
    """
    path, out = os.path.abspath(os.fspath(path)), os.path.abspath(os.fspath(out))
    if not os.path.exists(path):
        raise FileNotFoundError(f"no zoo file at {path}")
    if path == out:
        raise ZooError(f"the output is the input ({out}); write the canonicalized zoo to a new file")
    check_output(out, overwrite, what="canonicalized zoo")
    with ZooReader(path) as reader:
        if reference_split is not None and reference_split not in reader.split_names:
            raise ZooError(f"{path} has no split {reference_split!r} to compute the references from (it has "
                           f"{list(reader.split_names) or 'none'}); pass --reference-split all, or split it first "
                           "with `python -m datasets split`")
        layouts = {fp: reader.layout(fp) for fp in reader.fingerprints}
        rows_of = {fp: reader.model_row[reader.model_arch == i] for i, fp in enumerate(reader.fingerprints)}
    canon = Canonicalize.from_dataset(ZooDataset(path, reference_split, labels=[]), refine=refine, sample=sample)
    for fp, layout in layouts.items():  # refused before anything is written
        if fp not in canon.references:
            raise ZooError(f"architecture {layout.name}#{fp} has no model in split {reference_split!r}; "
                           "pass --reference-split all")
    counts = {fp: int(r.max()) + 1 if len(r) else 0 for fp, r in rows_of.items()}  # stored rows
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.{uuid.uuid4().hex[:8]}.canonical.tmp")
    try:
        shutil.copyfile(path, tmp)
        bar = tqdm(total=sum(counts.values()), unit="model", desc="canonicalize", disable=not progress or None)
        with ZooWriter(tmp, "a", default_split=None, commit_interval=None) as writer, ZooReader(path) as reader:
            for fp, layout in layouts.items():
                for start in range(0, counts[fp], block):
                    rows = reader.read_rows(fp, np.arange(start, min(start + block, counts[fp])))[0]
                    aligned = np.stack([canon(torch.from_numpy(r), layout).numpy() for r in rows])
                    writer.replace_params(fp, start, aligned)
                    bar.update(len(rows))
                writer.set_arch_attrs(fp, {"canonical": f"weight matching to the mean of {sample} or fewer models of "
                                                        f"split {reference_split or 'all'}, at most {refine} rounds"})
                writer.set_arch_dataset(fp, "canonical_reference", canon.references[fp].numpy())
        bar.close()
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return canon


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``canonicalize`` command."""
    p = subparsers.add_parser("canonicalize", help="align every model of a zoo to a reference (a new zoo)",
                              description="Write a copy of a zoo in which every model is replaced by the neuron "
                                          "permutation of itself that weight matching brings closest to a reference "
                                          "of its architecture (the mean of aligned models of one split). Functions "
                                          "are unchanged.")
    p.add_argument("zoo", help="input zoo .h5 (left unchanged)")
    p.add_argument("out", help="output zoo .h5 (a new file)")
    p.add_argument("--reference-split", default="train",
                   help="split the references are computed from (default: train; 'all': every model)")
    p.add_argument("--refine", type=int, default=20,
                   help="most align-and-average rounds (default: 20; stops once no alignment changes; 0: first model)")
    p.add_argument("--sample", type=int, default=256, help="models per architecture for the reference (default: 256)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (atomically)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.refine < 0 or args.sample < 1:
        raise ZooError(f"--refine {args.refine} --sample {args.sample}: give --refine >= 0 and --sample >= 1")
    split = None if args.reference_split == "all" else args.reference_split
    canon = canonicalize_zoo(args.zoo, args.out, split, args.refine, args.sample, args.overwrite)
    with ZooReader(args.out) as reader:
        print(f"{args.out}: {reader.num_models} models aligned to {len(canon.references)} reference(s)")
    return 0
