"""Import Ray Tune style run folders: Model Zoos (Schürholt et al., 2022) and CNN Wild Park (Kofinas et al., 2024).

Published layout (one folder per training run, any depth below ROOT)::

    ROOT/<run>/params.json                      the run's config (a JSON object)
    ROOT/<run>/result.json                      one JSON object per line, per reported training iteration
    ROOT/<run>/checkpoint_000003/checkpoints    Model Zoos: torch.save(model.state_dict())
    ROOT/<run>/checkpoint_000003/checkpoint.pt  CNN Wild Park: {"model": state_dict, "iteration": 3,
                                                "last_result": {...}, "config": <OmegaConf>, ...}

Each checkpoint becomes one model labelled with ``epoch`` (the number in ``checkpoint_NNNNNN``), ``run``
(one id per run folder; the default split keeps a run together), ``source``, the run's config as
``config.<key>`` columns, and the metrics of the ``result.json`` line whose ``training_iteration``
equals that number (else the checkpoint's ``last_result``). ``/`` in metric names becomes ``_``
(``test/acc`` -> ``test_acc``).

The architecture comes from a model factory: with no argument it builds the one network of the
zoo; with one argument it receives the run's config (``params.json``), so each run can differ (CNN
Wild Park). It is traced once per distinct config and parameter shapes, and each traced network's
function (its ``torch.export`` program, named after the factory) is stored once in the zoo for the
models of that config to point at (a runnable zoo, see :mod:`datasets.hdf5`). Checkpoints are read
with ``torch.load(weights_only=True)``; pickled config objects become inert placeholders
(:func:`datasets.importers.common.load_torch_lenient`), no code from the files runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

import graphs
from datasets.errors import ZooError
from datasets.importers.common import add_import_options, check_import_output, flatten_labels, load_torch_lenient
from datasets.programs import store_program
from datasets.splits import SplitSpec
from datasets.zoo.storage import open_writer, stored_sources
from graphs.checkpoints import strip_wrapper_prefix
from graphs.cli import add_example_input_argument, call_factory, load_factory, parse_input_shapes, required_arguments
from graphs.convert import layout_keys
from graphs.example_inputs import infer_example_inputs

__all__ = ["CHECKPOINT_FILES", "detect", "find_runs", "import_checkpoint_dirs", "read_results", "register"]

CHECKPOINT_FILES = ("checkpoint.pt", "checkpoints", "model.pt", "model.pth", "model.safetensors")
_CKPT_DIR = re.compile(r"^checkpoint_(\d+)$")


def _checkpoint_file(folder: Path) -> Path | None:
    for name in CHECKPOINT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def find_runs(root: Path) -> list[tuple[Path, list[tuple[int, Path]]]]:
    """``[(run folder, [(epoch, checkpoint file)] sorted by epoch)]`` below ``root``, runs sorted by path."""
    runs: dict[Path, list[tuple[int, Path]]] = {}
    for folder in sorted(root.rglob("checkpoint_*")):
        m = _CKPT_DIR.match(folder.name)
        if m and folder.is_dir():
            ckpt = _checkpoint_file(folder)
            if ckpt is not None:
                runs.setdefault(folder.parent, []).append((int(m.group(1)), ckpt))
    return [(run, sorted(cks)) for run, cks in sorted(runs.items())]


def read_results(run: Path) -> dict[int, dict]:
    """``result.json`` lines by ``training_iteration`` (empty when the file is missing)."""
    path = run / "result.json"
    if not path.is_file():
        return {}
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ZooError(f"{path} line {n} is not JSON ({exc})") from exc
        if isinstance(record, dict) and "training_iteration" in record:
            out[int(record["training_iteration"])] = record
    return out


def _state_dict(obj, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The state_dict inside a loaded checkpoint, and the checkpoint's other scalar entries."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict", "net"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner, obj
    raise graphs.CheckpointError(f"{path} holds no state_dict (a dict of tensors, or one under 'model' / "
                                 "'state_dict')")


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds run folders with ``checkpoint_*/`` checkpoints."""
    p = Path(path)
    return p.is_dir() and any(_CKPT_DIR.match(f.name) and f.is_dir() and _checkpoint_file(f) is not None
                              for f in p.rglob("checkpoint_*"))


def import_checkpoint_dirs(root: str | os.PathLike, out: str | os.PathLike, factory: Callable[..., torch.nn.Module],
                           example_inputs=None, *, epochs: list[int] | None = None, limit: int | None = None,
                           append: bool = False, allow_nonfinite: bool = False, progress: bool = False,
                           factory_spec: str = "the model factory") -> int:
    """Import every ``checkpoint_*`` of every run under ``root`` into the zoo ``out``; return the count.

    Args:
        root: Folder of run folders.
        out: Zoo file to write.
        factory: ``factory()`` or ``factory(config)`` -> the ``nn.Module`` the checkpoints belong to.
        example_inputs: Input(s) to trace that module with (default: guessed from its first layer).
        epochs: Keep only these checkpoint numbers.
        limit: Import only the first ``limit`` runs.
        append: Add to ``out`` instead of replacing it, skipping checkpoints whose ``source`` is there.
        allow_nonfinite: Store checkpoints with NaN/Inf weights.
        progress: Progress bar on stderr.
        factory_spec: How the factory was named (for error messages).

    Checkpoints of a wrapped model (DDP's ``module.`` prefix) are unwrapped when that makes their keys
    the traced layout's (:func:`graphs.checkpoints.strip_wrapper_prefix`).
    """
    root = Path(root)
    if not root.is_dir():
        raise ZooError(f"no run folder at {root}")
    runs = find_runs(root)[:limit] if limit is not None else find_runs(root)
    if not runs:
        raise ZooError(f"no checkpoint_*/{{{','.join(CHECKPOINT_FILES)}}} under {root}")
    with_config = bool(required_arguments(factory))
    example = None if example_inputs is None else (
        example_inputs if isinstance(example_inputs, tuple) else (example_inputs,))
    done = stored_sources(out) if append else set()
    layouts: dict[tuple, tuple[graphs.Layout, int]] = {}  # (layout, program index) per config and shapes
    name = getattr(factory, "__name__", "") or factory_spec
    total = sum(len(cks) for _, cks in runs)
    bar = tqdm(total=total, desc="import checkpoint-dirs", unit="model", disable=not progress or None,
               file=sys.stderr)
    stored = 0
    with open_writer(out, append, allow_nonfinite, SplitSpec(group_by="run")) as writer:
        for run_id, (run, checkpoints) in enumerate(runs):
            params_path = run / "params.json"
            config = json.loads(params_path.read_text()) if params_path.is_file() else {}
            results = read_results(run)
            run_labels = flatten_labels(config, prefix="config.") if isinstance(config, dict) else {}
            for epoch, path in checkpoints:
                bar.update()
                source = path.relative_to(root).as_posix()
                if (epochs is not None and epoch not in epochs) or source in done:
                    continue
                sd, extra = _state_dict(load_torch_lenient(path), path)
                key = (json.dumps(config, sort_keys=True) if with_config else "",
                       tuple((k, tuple(v.shape)) for k, v in strip_wrapper_prefix(sd)[0].items()))
                if key not in layouts:
                    model = call_factory(factory, factory_spec, config) if with_config else call_factory(factory,
                                                                                                      factory_spec)
                    layout, program = graphs.trace_program(
                        model, example if example is not None else infer_example_inputs(model))
                    layouts[key] = layout, store_program(writer, layout, program, name)
                layout, program_index = layouts[key]
                sd = strip_wrapper_prefix(sd, layout_keys(layout))[0]
                result = results.get(epoch) or extra.get("last_result") or {}
                metrics = {k: v for k, v in flatten_labels(result).items() if not k.startswith("config.")}
                labels = {**run_labels, **metrics, "epoch": epoch, "run": run_id, "source": source}
                try:
                    writer.add(sd, layout, labels=labels, program=program_index)
                except graphs.LayoutMismatchError as exc:
                    raise graphs.LayoutMismatchError(f"{labels['source']}: {exc}") from exc
                stored += 1
    bar.close()
    return stored


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-checkpoint-dirs`` command."""
    p = subparsers.add_parser("import-checkpoint-dirs", help="import Ray Tune run folders (Model Zoos, CNN Wild Park)",
                              description="Import <run>/checkpoint_*/{checkpoints,checkpoint.pt} with each run's "
                                          "params.json and result.json as labels.")
    p.add_argument("src", help="folder of run folders")
    p.add_argument("out", help="zoo .h5 file to write")
    p.add_argument("--model", required=True,
                   help="module:factory building the network; factory() or factory(config from params.json)")
    add_example_input_argument(p, "shape to trace the network with, e.g. 1,1,28,28 (repeat for several inputs; "
                                  "default: guessed from the network's first layer)")
    p.add_argument("--epochs", type=lambda s: [int(x) for x in s.split(",")], help="keep these checkpoint numbers")
    add_import_options(p, "runs")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_import_output(args)
    example = None
    if args.example_input_shape:
        example = parse_input_shapes(args.example_input_shape, "--example-input-shape")
    start = time.perf_counter()
    n = import_checkpoint_dirs(args.src, args.out, load_factory(args.model)[0], example, epochs=args.epochs,
                               limit=args.limit, append=args.append, allow_nonfinite=args.allow_nonfinite,
                               progress=not args.quiet, factory_spec=args.model)
    print(f"{args.out}: imported {n} models from {args.src} in {time.perf_counter() - start:.1f} s")
    return 0
