"""Helpers shared by the importers: safe checkpoint loading, label clean-up, relative path resolution."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from datasets.errors import ZooError
from graphs.cli import check_output
from graphs.errors import CheckpointError

__all__ = ["Opaque", "PathResolver", "add_import_options", "check_import_output", "flatten_labels",
           "load_torch_lenient", "scalar_label"]


class Opaque:
    """Inert stand-in for a class pickled into a checkpoint (e.g. an OmegaConf config).

    :func:`load_torch_lenient` maps every class that ``torch.load(weights_only=True)`` refuses onto a
    subclass of this, so the file is read without importing or running anything from it. The
    object's constructor arguments and pickled state are kept (``args``, ``state``) for inspection.
    """

    qualified_name = "?"

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<opaque {self.qualified_name}>"


def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (Opaque,), {"qualified_name": name})


def load_torch_lenient(path: str | os.PathLike):
    """``torch.load(weights_only=True)``; foreign pickled classes become inert :class:`Opaque` objects.

    Checkpoints written by training frameworks often pickle a config object (Ray Tune / Hydra
    ``DictConfig``) beside the state_dict. Loading them with ``weights_only=False`` would import and
    run code named by the file; instead each such class is replaced by a stand-in that only records
    its arguments. Tensors, containers and numbers load exactly as ``torch.load`` returns them.

    Raises:
        graphs.CheckpointError: The file is not a torch checkpoint, or cannot be read even so.
    """
    path = os.fspath(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            names = []
        if not names:
            raise CheckpointError(f"{path} cannot be loaded with torch.load(weights_only=True): "
                                  f"{str(first).splitlines()[0] if str(first) else type(first).__name__}") from first
        try:
            with torch.serialization.safe_globals([(_stand_in(n), n) for n in names]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} pickles objects ({', '.join(names[:4])}) that cannot be read without "
                                  "running their code; re-save the state_dict alone (torch.save(model.state_dict()"
                                  ", path)) or as .safetensors") from exc


def scalar_label(value):
    """A label value (number or text) from a JSON/pickled value; lists and dicts become JSON text."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return value.item()
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def flatten_labels(record: Mapping, prefix: str = "") -> dict:
    """Flatten nested dicts into label columns.

    Keys are joined with ``.``; ``/`` (not allowed in a label name) becomes ``_``; numbers become floats
    (JSON records of different runs disagree on int/float and on which keys exist, and only a float
    column can hold a missing value); lists and other values become JSON text.
    """
    out: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}".replace("/", "_")
        if isinstance(value, Mapping):
            out.update(flatten_labels(value, prefix=f"{name}."))
            continue
        v = scalar_label(value)
        out[name] = float(v) if isinstance(v, (bool, int, float)) else v
    return out


class PathResolver:
    """Find the files that a split/index file names relative to some other working directory.

    A listed path is tried as given, then relative to each root, then with leading components removed
    one by one (DWSNets lists ``dataset/mnist-inrs/<dir>/checkpoints/model_final.pth`` relative to its
    repository root). The way that worked last is tried first, so a long list resolves in one ``stat``
    per file.

    Args:
        roots: Folders to look in, in order.
    """

    def __init__(self, *roots: str | os.PathLike) -> None:
        self.roots = tuple(Path(r) for r in roots)
        self._last: tuple[int, Path] | None = None

    def __call__(self, listed: str) -> Path:
        """The existing file that ``listed`` names.

        Raises:
            ZooError: No candidate exists.
        """
        p = Path(listed)
        if p.is_absolute() and p.is_file():
            return p
        parts = p.parts
        if self._last is not None:
            k, root = self._last
            if k < len(parts) and (root / Path(*parts[k:])).is_file():
                return root / Path(*parts[k:])
        for k in range(len(parts)):
            for root in self.roots:
                candidate = root / Path(*parts[k:])
                if candidate.is_file():
                    self._last = (k, root)
                    return candidate
        raise ZooError(f"cannot find {listed!r} (listed in the split file) under {[str(r) for r in self.roots]}; "
                       "give the folder that holds the checkpoints")


def add_import_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """The options every ``import-*`` command shares; ``unit`` names what is counted (runs, rows, ...).

    OUT is refused if it exists, unless ``--append`` (skip what is there) or ``--overwrite``.
    """
    parser.add_argument("--limit", type=int, help=f"import only the first N {unit}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true",
                      help="add to OUT, skipping the models whose source is already in it")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUT (atomically)")
    parser.add_argument("--allow-nonfinite", action="store_true", help=f"store {unit} with NaN/Inf weights")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_import_output(args: argparse.Namespace) -> None:
    """The output policy of the ``import-*`` commands (see :func:`add_import_options`)."""
    check_output(args.out, args.overwrite or args.append, resume="--append to add what is not in it yet",
                 what="zoo")
