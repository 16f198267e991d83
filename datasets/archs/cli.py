"""``archs N OUT.h5``: sample an architecture population, trace every net, and store it.

Example::

    python -m datasets archs 1000 archs.h5 --dataset digits --ood 50
    python -m datasets archs 200 c10.h5 --input-shape 3,32,32 --num-classes 10 --families cell
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

import graphs
from datasets.archs.build import build_module
from datasets.archs.sampler import MIN_ARCHS, sample_archs
from datasets.archs.space import ArchSpec
from datasets.archs.store import write_archs
from datasets.errors import ZooError
from datasets.zoo.storage import num_threads
from graphs.cli import add_example_input_argument, check_output
from graphs.cli import parse_shape as parse_sizes

__all__ = ["DATASET_SHAPES", "make_archs", "parse_shape", "register", "run"]

DATASET_SHAPES = {"digits": ((1, 8, 8), 10), "mnist1d": ((1, 40), 10)}
"""Input shape and number of classes of the data sets known by name."""


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,32,32"`` -> ``(3, 32, 32)``; raises :class:`ZooError` unless it is ``C,L`` or ``C,H,W``."""
    try:
        shape = parse_sizes(text)
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3):
        raise ZooError(f"--input-shape {text!r} is malformed; give C,L for signals or C,H,W for images with "
                       "positive sizes, e.g. 1,40 or 3,32,32")
    return shape


def trace_all(specs: Sequence[ArchSpec], progress: bool = False) -> list[graphs.Layout]:
    """The traced :class:`graphs.Layout` of every spec's module (on ``spec.example_input()``)."""
    layouts = []
    for spec in tqdm(specs, unit="arch", desc="trace", disable=not progress or None):
        layouts.append(graphs.trace(build_module(spec), (spec.example_input(),)))
    return layouts


def make_archs(n: int, out: str, input_shape: Sequence[int], num_classes: int, *, dataset: str = "",
               seed: int = 0, n_ood: int = 50, families: Sequence[str] = ("cell", "mlp", "vit"),
               progress: bool = False) -> tuple[list[ArchSpec], dict[str, np.ndarray], list[graphs.Layout]]:
    """Sample (:func:`~datasets.archs.sampler.sample_archs`), trace, and write an architecture file ``out``."""
    specs, splits = sample_archs(n, input_shape, num_classes, seed=seed, n_ood=n_ood, families=families)
    layouts = trace_all(specs, progress)
    write_archs(out, specs, splits, layouts, {"dataset": dataset, "seed": seed})
    return specs, splits, layouts


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``archs`` command."""
    p = subparsers.add_parser("archs", help="sample and trace an architecture population (for hypernetworks)",
                              description="Sample N in-distribution architectures (cell / mlp / vit families, "
                                          "split 80/10/10) plus --ood nets of each out-of-distribution kind "
                                          "(wide, deep, dense, bnfree), trace them, and write an HDF5 file.")
    p.add_argument("n", type=int, metavar="N", help=f"in-distribution architectures (at least {MIN_ARCHS})")
    p.add_argument("out", metavar="OUT.h5", help="architecture file to write (refused if it exists; see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (atomically)")
    p.add_argument("--dataset", choices=sorted(DATASET_SHAPES),
                   help="data set the nets take as input (default: digits, unless --input-shape is given)")
    add_example_input_argument(p, "per-sample input shape C,L or C,H,W (no batch size) instead of a data set's "
                                  "(needs --num-classes)", multiple=False)
    p.add_argument("--num-classes", type=int, help="output classes (default: the data set's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--ood", type=int, default=50, help="nets of each OOD kind (default: 50)")
    p.add_argument("--families", default="cell,mlp,vit", help="comma-separated families (default: cell,mlp,vit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``archs`` from parsed arguments; print a one-line summary."""
    check_output(args.out, args.overwrite, what="architecture file")
    if args.example_input_shape is not None:
        if args.num_classes is None:
            raise ZooError("--input-shape needs --num-classes (the number of output classes)")
        shape, classes, dataset = parse_shape(args.example_input_shape), args.num_classes, args.dataset or "custom"
    else:
        dataset = args.dataset or "digits"
        shape, classes = DATASET_SHAPES[dataset]
        classes = args.num_classes if args.num_classes is not None else classes
    if classes < 2:
        raise ZooError(f"--num-classes must be at least 2, got {classes}")
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    start = time.perf_counter()
    with num_threads(1):  # tiny nets: one thread is fastest and leaves the other cores alone
        specs, splits, layouts = make_archs(args.n, args.out, shape, classes, dataset=dataset, seed=args.seed,
                                            n_ood=args.ood, families=families, progress=not args.quiet)
    counts = " ".join(f"{k} {len(v)}" for k, v in splits.items())
    ids = np.concatenate([splits[k] for k in ("train", "val", "test")])
    sizes = np.array([lay.num_params for lay in layouts])
    print(f"{args.out}: {len(specs)} archs ({counts}), {len({lay.fingerprint for lay in layouts})} layouts, "
          f"params ID {sizes[ids].min()}-{sizes[ids].max()}, all {sizes.min()}-{sizes.max()}, "
          f"{time.perf_counter() - start:.1f} s")
    return 0
