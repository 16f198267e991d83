"""Import folders of SIREN checkpoints (``.pth``) in the DWSNets / NFN / neural-graphs style.

Published layouts this reads:

* DWSNets MNIST INRs: ``mnist-inrs/mnist_png_{training,testing}_{label}_{idx}/checkpoints/model_final.pth``
  and a split file ``{"train": {"path": [...], "label": [...]}, "val": {...}, "test": {...}}`` whose
  paths are relative to the DWSNets repository (``dataset/mnist-inrs/...``) and labels are strings.
* neural-graphs Fashion-MNIST INRs: a split file ``{"train": [path, ...], ...}`` with the class stored
  inside each checkpoint under ``"label"``.
* A folder without a split file: every ``*.pth``/``*.pt`` below it, the class parsed from the path
  (``..._{label}_{idx}/`` as DWSNets, or ``..._{label}s/`` as NFN's CIFAR SIRENs).

Every checkpoint must be the DWSNets INR state_dict: ``seq.{i}.weight``/``seq.{i}.bias`` of a chain of
linear layers (sine layers with ``w0 = 30``, then a linear output; output ``+ 0.5``). That is
:class:`datasets.zoo.models.Siren`, so imported INRs share their layout with ``build digits-siren``.
The split file's splits are stored as the zoo's splits, and the SIREN's function (its ``torch.export``
program, named ``siren``) is stored once per set of layer shapes, so the zoo is runnable. Checkpoints
are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import graphs
from datasets.errors import ZooError
from datasets.importers.common import PathResolver, add_import_options, check_import_output, scalar_label
from datasets.programs import store_program
from datasets.splits import SplitSpec
from datasets.zoo.models import Siren
from datasets.zoo.storage import open_writer, stacked_rows, stored_sources
from graphs.checkpoints import strip_wrapper_prefix

__all__ = ["detect", "find_split_file", "import_inr_folder", "label_from_path", "read_split_file", "register",
           "siren_for"]

_SPLIT_NAMES = ("train", "val", "test")
_LABEL_PATTERNS = (re.compile(r"_(\d+)_\d+$"), re.compile(r"_(\d+)s$"))


def label_from_path(path: Path) -> int | None:
    """The class in a DWSNets (``mnist_png_training_7_123``) or NFN (``randinit_smaller_7s``) folder name."""
    for part in reversed(path.parent.parts):
        for pattern in _LABEL_PATTERNS:
            m = pattern.search(part)
            if m:
                return int(m.group(1))
    return None


def find_split_file(root: Path) -> Path | None:
    """A ``*split*.json`` in ``root`` or its parent (DWSNets keeps it beside or above the INR folders)."""
    for folder in (root, root.parent):
        found = sorted(folder.glob("*split*.json"))
        if found:
            return found[0]
    return None


def read_split_file(path: Path, root: Path) -> list[tuple[Path, str, dict]]:
    """``[(checkpoint, split, extra labels)]`` from a split file of either published schema."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ZooError(f"{path}: a split file maps split names to entries, e.g. {{'train': {{'path': [...], "
                       "'label': [...]}}}}")
    resolve = PathResolver(root, path.parent)
    out = []
    for split, entries in data.items():
        if isinstance(entries, dict):  # DWSNets: {"path": [...], "label": [...], ...other columns}
            paths = entries.get("path")
            if not isinstance(paths, list):
                raise ZooError(f"{path}: split {split!r} has no 'path' list")
            columns = {k: v for k, v in entries.items() if k != "path" and isinstance(v, list)}
            bad = [k for k, v in columns.items() if len(v) != len(paths)]
            if bad:
                raise ZooError(f"{path}: split {split!r} columns {bad} differ in length from its {len(paths)} paths")
            for i, p in enumerate(paths):
                out.append((resolve(p), split, {k: v[i] for k, v in columns.items()}))
        elif isinstance(entries, list):  # neural-graphs: [path, ...], label inside the checkpoint
            out += [(resolve(p), split, {}) for p in entries]
        else:
            raise ZooError(f"{path}: split {split!r} must be a list of paths or a {{'path': [...]}} object")
    return out


def siren_for(sd: dict[str, torch.Tensor], source: str) -> Siren:
    """The :class:`Siren` whose state_dict has the keys and shapes of ``sd``."""
    n = len(sd) // 2
    keys = [k for i in range(n) for k in (f"seq.{i}.weight", f"seq.{i}.bias")]
    if sorted(sd) != sorted(keys) or n < 2:
        raise ZooError(f"{source} is not a DWSNets-style SIREN (keys seq.{{i}}.weight / seq.{{i}}.bias), it has "
                       f"{sorted(sd)[:6]}; import other checkpoints with `python -m datasets convert SRC OUT "
                       "--model module:factory`")
    shapes = [tuple(sd[f"seq.{i}.weight"].shape) for i in range(n)]
    hidden = shapes[0][0]
    if any(s != (hidden, hidden) for s in shapes[1:-1]) or shapes[-1][1] != hidden:
        raise ZooError(f"{source}: layer shapes {shapes} are not a SIREN of one hidden width")
    return Siren(shapes[0][1], hidden, n, shapes[-1][0])


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise graphs.CheckpointError(f"{path} cannot be loaded with torch.load(weights_only=True): "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if not isinstance(obj, dict):
        raise graphs.CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    weights = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and v.dim() > 0}
    unwrapped, prefix = strip_wrapper_prefix(weights)  # a SIREN saved from a DDP-wrapped model: module.seq.*
    if prefix and all(k.startswith("seq.") for k in unwrapped):
        obj = {**{k: v for k, v in obj.items() if k not in weights}, **unwrapped}
    extra = {k: scalar_label(obj.pop(k)) for k in list(obj) if not k.startswith("seq.")}
    return obj, extra


def _source(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _shape_key(sd: dict[str, torch.Tensor]) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in sd.items())


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an INR folder: a split file beside ``.pth`` files, or DWSNets folder names."""
    p = Path(path)
    if not p.is_dir():
        return False
    if find_split_file(p) is not None:
        return True
    return any(label_from_path(f) is not None for f in p.glob("*/**/*.pth"))


def import_inr_folder(root: str | os.PathLike, out: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                      limit: int | None = None, append: bool = False, allow_nonfinite: bool = False,
                      block: int = 4096, progress: bool = False) -> int:
    """Import every SIREN checkpoint under ``root`` into the zoo ``out``; return the number stored.

    Labels: ``class`` (from the checkpoint's ``"label"``, the split file or the path; -1 when none says), ``split`` (the
    split file's name for it), ``source`` (path relative to ``root``) and any other per-entry column
    of the split file. With a split file, its splits become the zoo's stored splits.

    Args:
        root: Folder of checkpoints.
        out: Zoo file to write.
        split_file: The split JSON (default: a ``*split*.json`` in ``root`` or its parent, if any).
        limit: Import only the first ``limit`` checkpoints.
        append: Add to ``out`` instead of replacing it, skipping checkpoints whose ``source`` is already
            there (the split file's splits are then not stored).
        allow_nonfinite: Store checkpoints with NaN/Inf weights.
        block: Checkpoints stacked per write.
        progress: Progress bar on stderr.
    """
    root = Path(root)
    if not root.is_dir():
        raise ZooError(f"no INR folder at {root}")
    split_path = Path(split_file) if split_file is not None else find_split_file(root)
    if split_path is not None:
        entries = read_split_file(split_path, root)
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".pth", ".pt") and p.is_file())
        entries = [(p, "", {}) for p in files]
    if not entries:
        raise ZooError(f"no .pth/.pt checkpoints under {root}")
    entries = entries[:limit] if limit is not None else entries
    if append:
        done = stored_sources(out)
        entries = [e for e in entries if _source(e[0], root) not in done]
    layouts: dict[tuple, tuple[graphs.Layout, int]] = {}  # (layout, program index) per shapes
    split_of: list[str] = []
    pending: list[tuple[dict, dict]] = []
    bar = tqdm(total=len(entries), desc="import inr-folder", unit="inr", disable=not progress or None, file=sys.stderr)
    with open_writer(out, append, allow_nonfinite) as writer:

        def flush() -> None:  # rows are written in entry order, so model i is entries[i]
            if not pending:
                return
            first = pending[0][0]
            layout, program = layouts[_shape_key(first)]
            stacked = {k: torch.stack([sd[k] for sd, _ in pending]) for k in first}
            names = dict.fromkeys(n for _, lab in pending for n in lab)
            writer.add_rows(layout, stacked_rows(stacked, layout),
                            labels={n: [lab.get(n) for _, lab in pending] for n in names}, program=program)
            pending.clear()

        for path, split, extra in entries:
            sd, inner = _load(path)
            source = _source(path, root)
            key = _shape_key(sd)
            if key not in layouts:
                layout, program = graphs.trace_program(siren_for(sd, source),
                                                       torch.zeros(16, sd["seq.0.weight"].shape[1]))
                layouts[key] = layout, store_program(writer, layout, program, "siren")
            if pending and (key != _shape_key(pending[0][0]) or len(pending) >= block):
                flush()
            label = inner.pop("label", extra.pop("label", None))
            label = label if label is not None else label_from_path(path)
            labels = {"class": int(label) if label is not None else -1, "split": split, "source": source,
                      **{k: scalar_label(v) for k, v in {**extra, **inner}.items()}}
            pending.append((sd, labels))
            split_of.append(split)
            bar.update()
        flush()
        if split_path is not None and not append:  # store the published splits
            arr = np.asarray(split_of)
            names = tuple(n for n in _SPLIT_NAMES if n in split_of) + tuple(
                dict.fromkeys(n for n in split_of if n not in _SPLIT_NAMES))
            splits = {n: np.flatnonzero(arr == n) for n in names}
            writer.set_splits(splits, SplitSpec(names=names, fractions=tuple(len(splits[n]) / len(arr) for n in names)))
    bar.close()
    return len(entries)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-inr-folder`` command."""
    p = subparsers.add_parser("import-inr-folder", help="import a DWSNets/NFN-style folder of SIREN .pth files",
                              description="Import SIREN checkpoints (keys seq.{i}.weight/bias) with their split "
                                          "file (DWSNets {split: {path, label}} or {split: [paths]}) or, without "
                                          "one, with classes parsed from the folder names.")
    p.add_argument("src", help="folder of INR checkpoints, e.g. mnist-inrs/")
    p.add_argument("out", help="zoo .h5 file to write")
    p.add_argument("--split-file", help="split JSON (default: *split*.json in SRC or its parent)")
    add_import_options(p, "checkpoints")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_import_output(args)
    start = time.perf_counter()
    n = import_inr_folder(args.src, args.out, split_file=args.split_file, limit=args.limit, append=args.append,
                          allow_nonfinite=args.allow_nonfinite, progress=not args.quiet)
    print(f"{args.out}: imported {n} INRs from {args.src} in {time.perf_counter() - start:.1f} s")
    return 0
