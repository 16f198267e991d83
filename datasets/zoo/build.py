"""``build RECIPE OUT.h5``: train a population (or fit INRs) and store it as a zoo.

Classifier zoos store one model per checkpoint epoch of every run, labelled with its metrics
(``test_acc``, ``test_loss``, ``train_acc``, ``train_loss``, ``epoch``) and the run's hyperparameters
(``run``, ``width``, ``lr``, ...); the default split keeps all checkpoints of a run in one split
(``group_by="run"``). INR zoos store one SIREN per image labelled ``class``/``class_name`` with its
fit quality (``psnr``), ``shared_init`` (1: every SIREN started from one initialization) and ``view``
(which of the recipe's ``views`` SIRENs of that image; their splits then group by ``image_index``). Each
architecture is traced once (``graphs.trace_program``), and its exported program is stored with the
models, so the zoo is runnable (probe features need no source code).

An existing OUT is refused unless ``--overwrite`` (replace it) or ``--append`` (add to it). Appending
a recipe whose seed is already in the zoo is refused, since it would store the same runs again: the
``recipe`` and ``seed`` labels say what is there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import graphs
from datasets.errors import ZooError
from datasets.hdf5 import ZooReader
from datasets.splits import DEFAULT_SPLIT, SplitSpec
from datasets.zoo.data import load_data
from datasets.zoo.images import load_images
from datasets.zoo.inr import fit_sirens
from datasets.zoo.models import ModelSpec, Siren, build_model
from datasets.zoo.recipes import RECIPES, ClassifierRecipe, SirenRecipe, get_recipe, sample_runs
from datasets.zoo.storage import num_threads, open_writer, resolve_device, stacked_rows
from datasets.zoo.train import train_run
from graphs.cli import check_output

__all__ = ["BuildResult", "build_classifier_zoo", "build_siren_zoo", "build_zoo", "register"]

RUN_SPLIT = SplitSpec(group_by="run")
"""80/10/10 by training run: checkpoints of one run never straddle splits."""

IMAGE_SPLIT = SplitSpec(group_by="image_index")
"""80/10/10 by image: the SIRENs of one image (its views) never straddle splits."""


@dataclass(frozen=True)
class BuildResult:
    """What a build stored: ``models`` rows from ``runs`` runs (or images), in ``seconds``."""

    models: int
    runs: int
    seconds: float


def _trace(spec: ModelSpec, cache: dict, writer) -> tuple[graphs.Layout, int]:
    """The layout of ``spec`` and the index of its stored program (traced once per distinct function)."""
    key = (spec.family, spec.in_channels, spec.in_size, spec.num_classes, spec.width, spec.depth, spec.activation,
           spec.stride, spec.padding, spec.norm, spec.dropout > 0)  # the dropout rate does not change the graph
    if key not in cache:
        layout, program = graphs.trace_program(build_model(spec), spec.example_input)
        cache[key] = layout, writer.add_program(layout, program, f"{spec.family}-{spec.activation}")
    return cache[key]


def _refuse_repeated_seeds(out: str | os.PathLike, recipe: str, seeds: list[int], what: str) -> None:
    """Raise when the zoo ``out`` already holds models of ``recipe`` with one of ``seeds``."""
    if not os.path.exists(out):
        return
    with ZooReader(out) as r:
        if not {"recipe", "seed"} <= set(r.label_names):
            return
        names, stored = r.labels("recipe"), r.labels("seed")
    mine = stored[names == recipe]
    repeated = np.intersect1d(mine[np.isfinite(mine)] if mine.dtype.kind == "f" else mine, seeds)
    if len(repeated):
        count = int(np.isin(mine, repeated).sum())
        raise ZooError(f"{out} already holds {count} models of recipe {recipe!r} with {what} {repeated[:3].tolist()}"
                       f"{'...' if len(repeated) > 3 else ''}; appending would store them again: pass another --seed, "
                       "or --overwrite to rebuild the zoo")


def build_classifier_zoo(recipe: ClassifierRecipe, out: str | os.PathLike, *,
                         data_path: str | os.PathLike | None = None, device: str = "cpu", append: bool = False,
                         threads: int | None = 1, allow_nonfinite: bool = False,
                         progress: bool = False) -> BuildResult:
    """Train every run of ``recipe`` and write its checkpoints to ``out``.

    Args:
        recipe: The population.
        out: Zoo file (replaced, or appended to with ``append``).
        data_path: Folder of file-based data (MNIST idx, CIFAR-10 pickles, image folder).
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        append: Add to an existing zoo instead of replacing it (refused when a run's seed is already there).
        threads: Torch threads while training (1 is fastest for these small models; ``None``: unchanged).
        allow_nonfinite: Store non-finite weights (runs that diverge are cut before that anyway).
        progress: Show a progress bar on stderr.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    data = load_data(recipe.data, data_path)
    runs = sample_runs(recipe, data.in_channels, data.in_size, data.num_classes)
    if append:
        _refuse_repeated_seeds(out, recipe.name, [cfg.seed for cfg in runs], "run seeds")
    cache: dict = {}
    stored = 0
    with num_threads(threads), open_writer(out, append, allow_nonfinite, RUN_SPLIT) as writer:
        for cfg in tqdm(runs, desc=f"build {recipe.name}", unit="run", disable=not progress or None,
                        file=sys.stderr):
            layout, program = _trace(cfg.spec, cache, writer)
            for ck in train_run(cfg, data, dev):
                writer.add(ck.state_dict, layout, labels={**cfg.labels(), **ck.metrics, "epoch": ck.epoch,
                                                          "recipe": recipe.name, "data": data.name}, program=program)
                stored += 1
    return BuildResult(stored, len(runs), time.perf_counter() - start)


def build_siren_zoo(recipe: SirenRecipe, out: str | os.PathLike, *, data_path: str | os.PathLike | None = None,
                    device: str = "cpu", append: bool = False, threads: int | None = 1,
                    progress: bool = False) -> BuildResult:
    """Fit ``recipe.views`` SIRENs per image of ``recipe.images`` and write them (labels: ``class``, ``psnr``, ...).

    View ``v`` of image ``k`` (of ``N``) starts from the initialization of index ``v * N + k`` (see
    :func:`fit_sirens`), so view 0 is the SIREN a one-view recipe fits. ``append`` adds to an existing
    zoo; a recipe seed already there is refused.
    """
    if recipe.views < 1:
        raise ZooError(f"recipe {recipe.name!r}: views must be >= 1, got {recipe.views}")
    if recipe.views > 1 and recipe.siren.shared_init:
        raise ZooError(f"recipe {recipe.name!r}: views > 1 with shared_init would fit the same SIREN {recipe.views} "
                       "times (every view starts from one initialization)")
    if append:
        _refuse_repeated_seeds(out, recipe.name, [recipe.seed], "seed")
    start = time.perf_counter()
    dev = resolve_device(device)
    images = load_images(recipe.images, data_path, recipe.size).take(recipe.n_images)
    cfg = recipe.siren
    n, channels = len(images), int(images.images.shape[1])
    layout, program = graphs.trace_program(Siren(2, cfg.hidden, cfg.depth, channels, cfg.w0, cfg.offset),
                                           torch.zeros(16, 2))
    split = IMAGE_SPLIT if recipe.views > 1 else DEFAULT_SPLIT
    bar = tqdm(total=n * recipe.views, desc=f"build {recipe.name}", unit="inr", disable=not progress or None,
               file=sys.stderr)
    with num_threads(threads), open_writer(out, append, split=split) as writer:
        program_index = writer.add_program(layout, program, "siren")
        for view in range(recipe.views):
            for lo in range(0, n, cfg.batch_size):
                hi = min(n, lo + cfg.batch_size)
                fit = fit_sirens(images.images[lo:hi], cfg, seed=recipe.seed, device=dev, first_index=view * n + lo,
                                 progress=bar.update)
                classes = images.labels[lo:hi].tolist()
                labels = {"class": classes, "class_name": [images.class_names[c] for c in classes],
                          "image_index": list(range(lo, hi)), "view": [view] * (hi - lo), "psnr": fit.psnr.tolist(),
                          "mse": fit.mse.tolist(), "recipe": [recipe.name] * (hi - lo),
                          "data": [images.name] * (hi - lo), "seed": [recipe.seed] * (hi - lo),
                          "shared_init": [int(cfg.shared_init)] * (hi - lo)}
                writer.add_rows(layout, stacked_rows(fit.params, layout), labels=labels, program=program_index)
    bar.close()
    return BuildResult(n * recipe.views, n, time.perf_counter() - start)


def build_zoo(recipe: ClassifierRecipe | SirenRecipe, out: str | os.PathLike, **kwargs) -> BuildResult:
    """Build ``recipe`` into ``out`` (see :func:`build_classifier_zoo` / :func:`build_siren_zoo` for kwargs)."""
    if isinstance(recipe, ClassifierRecipe):
        return build_classifier_zoo(recipe, out, **kwargs)
    if isinstance(recipe, SirenRecipe):
        kwargs.pop("allow_nonfinite", None)
        return build_siren_zoo(recipe, out, **kwargs)
    raise TypeError(f"expected a ClassifierRecipe or SirenRecipe, got {type(recipe).__name__}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` command."""
    p = subparsers.add_parser("build", help="train a model zoo (or fit an INR zoo) from a recipe",
                              description="Train a population from a named recipe and store it. Data ships in "
                                          "packages (digits, mnist1d, scikit-image) or is read from --data-path; "
                                          "nothing is downloaded. Recipes: " + ", ".join(sorted(RECIPES)))
    p.add_argument("recipe", choices=sorted(RECIPES), metavar="RECIPE", help="recipe name")
    p.add_argument("out", help="zoo .h5 file to write (refused if it exists, unless --append or --overwrite)")
    p.add_argument("--data-path", help="folder with MNIST idx files, CIFAR-10 python batches or ROOT/<class>/*.png")
    p.add_argument("--seed", type=int, help="recipe seed (default: the recipe's)")
    p.add_argument("--n-runs", type=int, help="number of training runs (classifier recipes)")
    p.add_argument("--n-images", type=int, help="number of images to fit (INR recipes)")
    p.add_argument("--views", type=int, help="SIRENs per image, each from its own initialization (INR recipes; "
                   "more than 1 splits by image)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads while training (default: 1, fastest for these small models)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true",
                      help="add to OUT (refused when the recipe's seed is already in it)")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUT (atomically)")
    p.add_argument("--allow-nonfinite", action="store_true", help="store models with NaN/Inf weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_output(args.out, args.overwrite or args.append, resume="--append to add another seed's runs",
                 what="zoo")
    recipe = get_recipe(args.recipe, seed=args.seed)
    if isinstance(recipe, ClassifierRecipe):
        if args.n_images is not None or args.views is not None:
            raise ZooError(f"--n-images and --views apply to INR recipes; {args.recipe} trains classifiers (use "
                           "--n-runs)")
        recipe = get_recipe(args.recipe, seed=args.seed, n_runs=args.n_runs)
        res = build_classifier_zoo(recipe, args.out, data_path=args.data_path, device=args.device,
                                   append=args.append, threads=args.threads or 1,
                                   allow_nonfinite=args.allow_nonfinite, progress=not args.quiet)
        what = f"{res.runs} training runs"
    else:
        if args.n_runs is not None:
            raise ZooError(f"--n-runs applies to classifier recipes; {args.recipe} fits INRs (use --n-images)")
        recipe = get_recipe(args.recipe, seed=args.seed, n_images=args.n_images, views=args.views)
        res = build_siren_zoo(recipe, args.out, data_path=args.data_path, device=args.device, append=args.append,
                              threads=args.threads or 1, progress=not args.quiet)
        what = f"{res.runs} images"
    print(f"{args.out}: stored {res.models} models from {what} in {res.seconds:.1f} s")
    return 0
