"""Import the Small CNN Zoo (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from Weights").

The published layout of one dataset folder (``mnist/``, ``fashion_mnist/``, ``cifar10/``,
``svhn_cropped/`` after extracting its ``.tar.xz``)::

    weights.npy       float32 [rows, 4970]: every checkpoint's TensorFlow variables, flattened
    metrics.csv.gz    one row per weights row (also accepted uncompressed as metrics.csv): config.*
                      hyperparameters, modeldir (the run), step (the epoch), test_accuracy, test_loss,
                      train_accuracy, train_loss
    layout.csv        varname, start_idx, end_idx, shape: where each variable lies in a row, e.g.
                      sequential/conv2d/bias:0, 0, 16, "(16,)"; sequential/conv2d/kernel:0, 16, 160,
                      "(3, 3, 1, 16)"; ... sequential/dense/kernel:0, 4810, 4970, "(16, 10)"

The network (``train_network.build_cnn``) is 3 x Conv2D(16, 3x3, stride 2, VALID) with an activation,
global average pooling and Dense(10): :class:`datasets.zoo.models.SmallCNN` with ``padding=0``.
TensorFlow stores conv kernels as ``[kh, kw, in, out]`` and dense kernels as ``[in, out]``; torch
wants ``[out, in, kh, kw]`` and ``[out, in]``. The conversion is one precomputed column gather per
block of rows (no arithmetic), so imported weights equal the published ones exactly.

The zoo's networks differ in ``config.activation`` under one layout (activations have no weights),
so one program (the ``torch.export`` function, named ``small-cnn-<activation>``) is stored per
activation the imported rows use, each row pointing at its own: the zoo is runnable (see
:mod:`datasets.hdf5`). Rows with an activation :class:`SmallCNN` does not know, or a folder without a
``config.activation`` column, are stored without a program, with a warning.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import io
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import graphs
from datasets.errors import ZooError, ZooWarning
from datasets.importers.common import add_import_options, check_import_output
from datasets.programs import store_program
from datasets.splits import SplitSpec
from datasets.zoo.models import ACTIVATIONS, SmallCNN
from datasets.zoo.storage import open_writer, stored_sources

__all__ = ["TFVariable", "detect", "import_small_cnn_zoo", "read_layout_csv", "read_metrics_csv", "register",
           "tf_to_torch_columns", "torch_model"]

INPUT_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "svhn_cropped": 32}
_KERNEL_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}  # TF [kh, kw, in, out] -> [out, in, kh, kw]; [in, out] -> [out, in]


@dataclass(frozen=True)
class TFVariable:
    """One TensorFlow variable in a ``weights.npy`` row: ``row[start:end].reshape(shape)``."""

    name: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def layer(self) -> tuple[str, int]:
        """``("conv2d" | "dense", index)`` from ``sequential/conv2d_2/kernel:0`` (no suffix is index 0)."""
        m = re.search(r"(conv2d|dense)(?:_(\d+))?/(kernel|bias):0$", self.name)
        if m is None:
            raise ZooError(f"layout.csv variable {self.name!r} is neither a conv2d nor a dense kernel/bias; only "
                           "the 'cnn' architecture of the Small CNN Zoo is supported")
        return m.group(1), int(m.group(2) or 0)


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def read_layout_csv(path: str | os.PathLike, row_width: int | None = None) -> list[TFVariable]:
    """Parse ``layout.csv`` and check that the variables tile ``[0, row_width)`` exactly."""
    with _open_text(Path(path)) as fh:
        rows = list(csv.DictReader(fh))
    need = {"varname", "start_idx", "end_idx", "shape"}
    if not rows or not need <= set(rows[0]):
        raise ZooError(f"{path} is not a Small CNN Zoo layout.csv: need columns {sorted(need)}, found "
                       f"{sorted(rows[0]) if rows else 'no rows'}")
    out = []
    for r in rows:
        shape = tuple(int(s) for s in ast.literal_eval(r["shape"]))
        var = TFVariable(r["varname"], int(r["start_idx"]), int(r["end_idx"]), shape)
        if var.end - var.start != int(np.prod(shape)):
            raise ZooError(f"{path}: {var.name} spans {var.end - var.start} values but has shape {shape}")
        out.append(var)
    spans = sorted((v.start, v.end) for v in out)
    if spans[0][0] != 0 or any(a[1] != b[0] for a, b in pairwise(spans)) or (
            row_width is not None and spans[-1][1] != row_width):
        raise ZooError(f"{path}: the variables do not tile the {row_width}-wide rows of weights.npy exactly")
    return out


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of ``metrics.csv[.gz]`` (pandas' unnamed index column dropped).

    A column is int64 when every cell is an integer, float64 when every cell is a number or empty
    (NaN), else text.
    """
    with _open_text(Path(path)) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ZooError(f"{path} is empty")
        rows = list(reader)
    keep = [i for i, name in enumerate(header) if name and not name.startswith("Unnamed:")]
    return {header[i]: _column([r[i] if i < len(r) else "" for r in rows]) for i in keep}


def _column(cells: list[str]) -> np.ndarray:
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(c) if c != "" else np.nan for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=object)


def _architecture(variables: list[TFVariable]) -> tuple[list[TFVariable], list[TFVariable], TFVariable, TFVariable]:
    by_layer: dict[tuple[str, int], dict[str, TFVariable]] = {}
    for v in variables:
        by_layer.setdefault(v.layer, {})["kernel" if "kernel" in v.name.rsplit("/", 1)[-1] else "bias"] = v
    convs = sorted(k for k in by_layer if k[0] == "conv2d")
    dense = sorted(k for k in by_layer if k[0] == "dense")
    if not convs or len(dense) != 1 or any(len(by_layer[k]) != 2 for k in by_layer):
        raise ZooError("layout.csv does not describe the Small CNN Zoo 'cnn' (conv2d layers with kernel and bias, "
                       f"then one dense layer); found layers {sorted(by_layer)}")
    return ([by_layer[k]["kernel"] for k in convs], [by_layer[k]["bias"] for k in convs],
            by_layer[dense[0]]["kernel"], by_layer[dense[0]]["bias"])


def torch_model(variables: list[TFVariable], activation: str = "relu") -> tuple[SmallCNN, dict[str, TFVariable]]:
    """The torch network of a layout, and the TF variable behind each of its parameters."""
    kernels, biases, dense_k, dense_b = _architecture(variables)
    widths = {k.shape[3] for k in kernels}
    if len(widths) != 1 or any(k.shape[:2] != (3, 3) for k in kernels):
        raise ZooError(f"expected 3x3 conv kernels of one width, got {[k.shape for k in kernels]}")
    model = SmallCNN(kernels[0].shape[2], dense_k.shape[1], width=widths.pop(), depth=len(kernels),
                     activation=activation, stride=2, padding=0)
    names = {f"convs.{i}.weight": k for i, k in enumerate(kernels)}
    names.update({f"convs.{i}.bias": b for i, b in enumerate(biases)})
    names.update({"head.weight": dense_k, "head.bias": dense_b})
    return model, names


def tf_to_torch_columns(layout: graphs.Layout, sources: dict[str, TFVariable]) -> np.ndarray:
    """``cols [num_params]`` with ``torch_row = tf_row[cols]`` in ``layout`` order (TF kernels transposed)."""
    cols = np.empty(layout.num_params, dtype=np.int64)
    for p in layout.params:
        v = sources[p.name]
        idx = np.arange(v.start, v.end).reshape(v.shape)
        if len(v.shape) in _KERNEL_TO_TORCH and p.name.endswith("weight"):
            idx = idx.transpose(_KERNEL_TO_TORCH[len(v.shape)])
        if idx.shape != p.shape:
            raise ZooError(f"{v.name} {v.shape} does not become {p.name} {p.shape}")
        cols[p.offset:p.offset + p.numel] = idx.reshape(-1)
    return cols


def _activation_programs(writer, variables: list[TFVariable], layout: graphs.Layout, example: torch.Tensor,
                         activations: np.ndarray | None, n: int) -> np.ndarray:
    """The program index of each of ``n`` rows: one program per activation used, stored in ``writer``'s zoo.

    ``activations`` are the rows' ``config.activation`` values (``None``: no such column, every row -1).
    """
    if activations is None:
        if n:
            warnings.warn(ZooWarning("the Small CNN Zoo folder has no config.activation column, so the networks' "
                                     "function is unknown: models stored without a program; add one with `python "
                                     "-m datasets add-program ZOO --model FILE.py:make`"), stacklevel=3)
        return np.full(n, -1, np.int64)
    names = [str(a) for a in activations]
    index: dict[str, int] = {}
    for act in dict.fromkeys(names):
        if act not in ACTIVATIONS:
            warnings.warn(ZooWarning(f"activation {act!r} of the Small CNN Zoo is none of {sorted(ACTIVATIONS)}: its "
                                     "models are stored without a program"), stacklevel=3)
            index[act] = -1
            continue
        model = torch_model(variables, act)[0]
        traced, program = graphs.trace_program(model, example)
        if traced.fingerprint != layout.fingerprint:
            raise ZooError(f"the Small CNN with activation {act!r} traces to layout #{traced.fingerprint}, not the "
                           f"zoo's #{layout.fingerprint}; this is a weightgraph bug, please report it")
        index[act] = store_program(writer, layout, program, f"small-cnn-{act}")
    return np.array([index[a] for a in names], np.int64)


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Small CNN Zoo folder (``weights.npy`` + ``layout.csv`` + ``metrics.csv[.gz]``)."""
    p = Path(path)
    return p.is_dir() and (p / "weights.npy").is_file() and (p / "layout.csv").is_file() and (
        (p / "metrics.csv.gz").is_file() or (p / "metrics.csv").is_file())


def import_small_cnn_zoo(root: str | os.PathLike, out: str | os.PathLike, *, steps: list[int] | None = None,
                         limit: int | None = None, append: bool = False, allow_nonfinite: bool = False,
                         block_rows: int = 8192, progress: bool = False) -> int:
    """Import one Small CNN Zoo folder into the zoo file ``out``; return the number of models stored.

    Labels: every ``metrics.csv`` column under its own name (``config.activation``, ``test_accuracy``,
    ...) plus ``test_acc``, ``train_acc``, ``epoch`` (= ``step``), ``run`` (one id per ``modeldir``,
    the default split's group) and ``source`` (``<folder>/weights.npy:<row>``).

    Args:
        root: The folder.
        out: Zoo file to write.
        steps: Keep only checkpoints at these epochs (e.g. ``[86]`` for final weights, as NFN does).
        limit: Keep only the first ``limit`` (selected) rows.
        append: Add to ``out`` instead of replacing it, skipping rows whose ``source`` is already there.
        allow_nonfinite: Store rows with NaN/Inf (the published zoos have none).
        block_rows: Rows converted and written per block.
        progress: Progress bar on stderr.
    """
    root = Path(root)
    if not detect(root):
        raise ZooError(f"{root} is not a Small CNN Zoo folder: it needs weights.npy, layout.csv and "
                       "metrics.csv.gz (or metrics.csv)")
    weights = np.load(root / "weights.npy", mmap_mode="r")
    if weights.ndim != 2:
        raise ZooError(f"{root / 'weights.npy'} has shape {weights.shape}; expected [rows, params]")
    variables = read_layout_csv(root / "layout.csv", weights.shape[1])
    metrics_path = root / "metrics.csv.gz" if (root / "metrics.csv.gz").is_file() else root / "metrics.csv"
    metrics = read_metrics_csv(metrics_path)
    n_rows = len(next(iter(metrics.values()), []))
    if n_rows != weights.shape[0]:
        raise ZooError(f"{metrics_path.name} has {n_rows} rows for the {weights.shape[0]} rows of weights.npy; "
                       "they must correspond one to one")
    selected = np.arange(n_rows)
    if steps is not None:
        if "step" not in metrics:
            raise ZooError(f"{metrics_path.name} has no 'step' column to select steps {steps} with")
        selected = selected[np.isin(np.asarray(metrics["step"], dtype=np.float64), steps)]
    if limit is not None:
        selected = selected[:limit]
    if append:
        done = stored_sources(out)
        selected = np.array([i for i in selected if f"{root.name}/weights.npy:{i}" not in done], dtype=np.int64)
    model, sources = torch_model(variables)
    size = INPUT_SIZE.get(str(metrics.get("config.dataset", [""])[0]), 32)
    example = torch.zeros(1, model.convs[0].in_channels, size, size)
    layout = graphs.trace(model, example)
    cols = tf_to_torch_columns(layout, sources)
    run_ids: dict = {}
    runs = [run_ids.setdefault(m, len(run_ids)) for m in metrics.get("modeldir", np.arange(n_rows)).tolist()]
    aliases = {"test_acc": "test_accuracy", "train_acc": "train_accuracy", "epoch": "step"}
    bar = tqdm(total=len(selected), desc="import small-cnn-zoo", unit="model", disable=not progress or None,
               file=sys.stderr)
    with open_writer(out, append, allow_nonfinite, SplitSpec(group_by="run")) as writer:
        acts = metrics.get("config.activation")
        program = _activation_programs(writer, variables, layout, example,
                                       None if acts is None else acts[selected], len(selected))
        for lo in range(0, len(selected), block_rows):
            idx = selected[lo:lo + block_rows]
            rows = np.asarray(weights[idx])[:, cols]  # [k, 4970] in torch layout order: a pure gather
            labels = {name: values[idx].tolist() for name, values in metrics.items()}
            labels.update({alias: labels[src] for alias, src in aliases.items() if src in labels})
            labels["run"] = [runs[i] for i in idx]
            labels["source"] = [f"{root.name}/weights.npy:{i}" for i in idx]
            progs = program[lo:lo + block_rows]
            cuts = np.r_[0, np.flatnonzero(np.diff(progs)) + 1, len(idx)]  # runs of one program, in row order
            for a, b in pairwise(cuts.tolist()):
                writer.add_rows(layout, rows[a:b], labels={n: v[a:b] for n, v in labels.items()},
                                program=int(progs[a]))
            bar.update(len(idx))
    bar.close()
    return len(selected)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-small-cnn-zoo`` command."""
    p = subparsers.add_parser("import-small-cnn-zoo", help="import a Small CNN Zoo folder (weights.npy, ...)",
                              description="Import one Small CNN Zoo dataset folder (weights.npy, metrics.csv.gz, "
                                          "layout.csv), converting TensorFlow kernels to torch layout.")
    p.add_argument("src", help="the folder, e.g. cifar10/ extracted from cifar10.tar.xz")
    p.add_argument("out", help="zoo .h5 file to write")
    p.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                   help="keep checkpoints at these epochs only, e.g. 86 (final) or 0,1,2,3,20,40,60,80,86")
    add_import_options(p, "(selected) rows")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_import_output(args)
    start = time.perf_counter()
    n = import_small_cnn_zoo(args.src, args.out, steps=args.steps, limit=args.limit, append=args.append,
                             allow_nonfinite=args.allow_nonfinite, progress=not args.quiet)
    print(f"{args.out}: imported {n} models from {args.src} in {time.perf_counter() - start:.1f} s")
    return 0
