"""``convert``: a folder of checkpoints (``.pt``/``.pth``/``.safetensors``) into a zoo file.

Checkpoints are loaded in parallel worker processes (never executing code from them:
``torch.load(weights_only=True)`` or safetensors) and written by the main process in bulk. Each
model's path relative to the folder is stored in the ``source`` label, which makes the command
resumable: run it again and it skips the checkpoints already in the zoo.

The architecture comes from the checkpoint when it embeds one (a ``layout`` entry holding
``graphs.Layout.to_json()`` in a ``.pt`` dict, or in the ``.safetensors`` metadata), else from a
model factory ``module:function``, traced once per distinct set of parameter shapes. A factory
taking no argument builds the one architecture; a factory taking one argument is given each
checkpoint's state_dict, so that it can size the model (e.g. the width of ``conv1.weight``).
Without ``--example-input-shape`` the example input is guessed from the model's first layer
(:func:`graphs.example_inputs.infer_example_inputs`).

A traced architecture's function (its ``torch.export`` program) is stored once in the zoo and every
model converted with it points at it, so the zoo is runnable (probe features, see
:mod:`datasets.hdf5`). Checkpoints whose layout is embedded come with no module to export: they are
stored without a program (add one later with ``python -m datasets add-program``).

Checkpoints saved from a wrapped model (DDP's ``module.`` prefix on every key, ``torch.compile``'s
``_orig_mod.``) are unwrapped when that makes their keys the layout's
(:func:`graphs.checkpoints.strip_wrapper_prefix`). Weights wider than the layout's dtype (float64
checkpoints of a float32 architecture) are stored rounded, with one warning giving the largest
rounding error (:class:`datasets.writer.ZooWriter`).

Labels (``--labels``) are matched to checkpoints by name only (:func:`datasets.labels.match_labels`);
anything unmatched or missing is refused unless ``--allow-missing``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import graphs
from datasets.errors import ZooError
from datasets.hdf5 import ZooReader
from datasets.importers import inr_folder, small_cnn_zoo
from datasets.labels import match_labels, read_label_file
from datasets.programs import store_program
from datasets.writer import ZooWriter
from graphs.batch import flatten_state_dicts
from graphs.checkpoints import read_checkpoint, strip_wrapper_prefix
from graphs.cli import (
    add_example_input_argument,
    call_factory,
    check_output,
    load_factory,
    parse_input_shapes,
    required_arguments,
)
from graphs.convert import _plan, flatten_int_buffers, layout_keys
from graphs.example_inputs import infer_example_inputs

__all__ = ["ConvertResult", "convert_folder", "find_checkpoints", "register"]

SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_folder` did.

    Attributes:
        added: Models written.
        skipped: Checkpoints already in the zoo, or unreadable ones with ``skip_errors``.
        total: Models in the zoo afterwards.
    """

    added: int
    skipped: int
    total: int


def find_checkpoints(src: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path, source name)`` of every checkpoint under ``src`` (a folder, recursively, or one file)."""
    src = os.fspath(src)
    if os.path.isfile(src):
        return [(src, os.path.basename(src))]
    if not os.path.isdir(src):
        raise FileNotFoundError(f"no checkpoint folder or file at {src}")
    found = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(SUFFIXES):
                path = os.path.join(root, name)
                found.append((path, os.path.relpath(path, src).replace(os.sep, "/")))
    if not found:
        raise ZooError(f"no {'/'.join(SUFFIXES)} checkpoints under {src}")
    return found


def _loaded_tensors(path: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """A checkpoint's state_dict on the CPU, floats narrower than float32 widened to it, and its embedded layout."""
    sd, layout_json = read_checkpoint(path)
    return {k: (v.float() if v.is_floating_point() and v.dtype not in (torch.float32, torch.float64)
                else v).detach().cpu() for k, v in sd.items()}, layout_json


def load_checkpoint_arrays(path: str) -> tuple[dict[str, np.ndarray], str | None]:
    """A checkpoint's state_dict as NumPy arrays (cheap to send between processes) and its embedded layout."""
    sd, layout_json = _loaded_tensors(path)
    return {k: v.numpy() for k, v in sd.items()}, layout_json


def _try_load(job: tuple[str, str], loader) -> tuple[str, dict | None, str | None, str | None]:
    """``(source, state_dict, layout_json, None)`` by ``loader``, or ``(source, None, None, error)``."""
    path, source = job
    try:
        sd, layout_json = loader(path)
        return source, sd, layout_json, None
    except (graphs.CheckpointError, OSError) as exc:
        return source, None, None, str(exc)


def _load_job(job: tuple[str, str]) -> tuple[str, dict | None, str | None, str | None]:
    """Load one checkpoint in a worker process: its tensors travel as NumPy arrays."""
    return _try_load(job, load_checkpoint_arrays)


def _load_here(job: tuple[str, str]) -> tuple[str, dict | None, str | None, str | None]:
    """:func:`_load_job` in this process: the same tensors, without the trip through NumPy."""
    return _try_load(job, _loaded_tensors)


class _Block:
    """Consecutive models of one architecture, program and set of label names, added as one block of rows.

    What :meth:`ZooWriter.add` does per model, done for up to ``size`` models at once
    (:func:`graphs.batch.flatten_state_dicts`, one :meth:`ZooWriter.add_rows`). A state_dict that
    does not match its layout exactly, or holds floats of another dtype than the layout's (wider ones
    are rounded, and the writer measures that), is added on its own by :meth:`ZooWriter.add`, which
    checks it and words any error. Models reach the writer in their order; :meth:`flush` before
    anything else can fail keeps the first error the one of the first bad model.
    """

    def __init__(self, writer: ZooWriter, size: int = 256) -> None:
        self.writer, self.size = writer, size
        self.key: tuple | None = None
        self.sds: list[dict[str, torch.Tensor]] = []
        self.labels: list[dict] = []
        self.layout: graphs.Layout | None = None

    def add(self, sd: dict[str, torch.Tensor], layout: graphs.Layout, labels: dict, program: int, source: str) -> None:
        dtype = getattr(torch, layout.float_dtype)
        if not (_plan(layout).matches(sd)
                and all(t.dtype == dtype for t in sd.values() if t.is_floating_point())):
            self.flush()
            try:
                self.writer.add(sd, layout, labels=labels, program=program)
            except graphs.LayoutMismatchError as exc:
                raise graphs.LayoutMismatchError(f"{source}: {exc}") from exc
            return
        key = (layout.fingerprint, program, tuple(labels))
        if key != self.key or len(self.sds) >= self.size:
            self.flush()
            self.key, self.layout = key, layout
        self.sds.append(sd)
        self.labels.append(labels)

    def flush(self) -> None:
        if not self.sds:
            return
        sds, layout, program = self.sds, self.layout, self.key[1]
        self.sds, self.labels, labels, self.key = [], [], self.labels, None
        rows = flatten_state_dicts(sds, layout)
        ints = np.stack([flatten_int_buffers(sd, layout).numpy() for sd in sds]) if layout.int_buffers else None
        self.writer.add_rows(layout, rows.numpy(), ints, {name: [lab[name] for lab in labels] for name in labels[0]},
                             program=program)


def _init_worker() -> None:
    torch.set_num_threads(1)


class _Architectures:
    """Layouts by embedded JSON or by shape signature, tracing the factory once per signature.

    Each traced architecture's program is stored in the zoo once (:meth:`ZooWriter.add_program`);
    embedded layouts have none.
    """

    def __init__(self, factory: Callable | None, example_inputs: tuple | None, spec: str = "the model factory") -> None:
        self.factory, self.example_inputs, self.spec = factory, example_inputs, spec
        self.by_json: dict[str, graphs.Layout] = {}
        self.by_shapes: dict[tuple, tuple[graphs.Layout, int]] = {}
        self.by_signature: dict[tuple, tuple[graphs.Layout, str, int]] = {}  # (json, keys/shapes) -> _resolve

    def resolve(self, sd: dict[str, torch.Tensor], layout_json: str | None, source: str,
                writer: ZooWriter) -> tuple[graphs.Layout, dict[str, torch.Tensor], int]:
        """The checkpoint's layout, its unwrapped state_dict and the index of its program in ``writer``'s zoo.

        The state_dict is unwrapped to the layout's keys where it was wrapped. The program index is -1
        for an embedded layout (no module to export; see :func:`datasets.programs.store_program`).
        Checkpoints with the keys, shapes and embedded layout of one seen before resolve as it did.
        """
        seen = (layout_json, tuple((k, v.shape) for k, v in sd.items()))
        got = self.by_signature.get(seen)
        if got is None:
            got = self.by_signature[seen] = self._resolve(sd, layout_json, source, writer)
        layout, prefix, program = got
        return layout, ({k[len(prefix):]: v for k, v in sd.items()} if prefix else sd), program

    def _resolve(self, sd: dict[str, torch.Tensor], layout_json: str | None, source: str,
                 writer: ZooWriter) -> tuple[graphs.Layout, str, int]:
        """:meth:`resolve` of a new signature: the layout, the wrapper prefix to remove and the program index."""
        if layout_json is not None:
            if layout_json not in self.by_json:
                try:
                    self.by_json[layout_json] = graphs.Layout.from_json(layout_json)
                except ValueError as exc:
                    raise ZooError(f"{source}: its embedded layout cannot be read ({exc})") from exc
            layout = self.by_json[layout_json]
            return layout, strip_wrapper_prefix(sd, layout_keys(layout))[1], -1
        if self.factory is None:
            raise ZooError(f"{source} embeds no layout; pass --model module:factory so that its architecture can be "
                           "traced")
        unwrapped = strip_wrapper_prefix(sd)[0]  # what the factory sees: it sizes models by the usual keys
        key = tuple((k, tuple(v.shape)) for k, v in unwrapped.items())
        if key not in self.by_shapes:
            takes_sd = bool(required_arguments(self.factory))
            model = call_factory(self.factory, self.spec, unwrapped) if takes_sd else call_factory(self.factory,
                                                                                                   self.spec)
            example = self.example_inputs
            if example is None:
                example = infer_example_inputs(model, "--example-input-shape")
            layout, program = graphs.trace_program(model, example)
            name = getattr(self.factory, "__name__", "") or self.spec
            self.by_shapes[key] = layout, store_program(writer, layout, program, name)
        layout, program_index = self.by_shapes[key]
        return layout, strip_wrapper_prefix(sd, layout_keys(layout))[1], program_index


def _labels_by_source(labels_path: str | None, files: list[tuple[str, str]], needed: list[str],
                      allow_missing: bool) -> tuple[dict, dict]:
    """``({source: {name: value}}, {name: kind})`` from a labels file (see :func:`match_labels`)."""
    if labels_path is None:
        return {}, {}
    return match_labels(read_label_file(labels_path), [s for _, s in files], needed, allow_missing)


def convert_folder(src: str | os.PathLike, out: str | os.PathLike, *, factory: Callable | None = None,
                   example_inputs: tuple | None = None, labels: str | None = None, workers: int | None = None,
                   overwrite: bool = False, allow_nonfinite: bool = False, skip_errors: bool = False,
                   compression: str | None = None, progress: bool = True, allow_missing: bool = False,
                   factory_spec: str = "the model factory") -> ConvertResult:
    """Convert every checkpoint under ``src`` into the zoo ``out`` (resuming when ``out`` exists).

    Args:
        src: Folder of checkpoints (searched recursively) or one checkpoint.
        out: Zoo file to create or extend.
        factory: Builds the ``nn.Module`` of checkpoints that embed no layout (see module docstring).
        example_inputs: Inputs to trace the factory's model with (default: guessed from its first layer).
        labels: CSV/JSON labels file (see :func:`datasets.labels.read_label_file`), matched by name.
        workers: Loading processes (default: all cores; 0 or 1 loads in this process).
        overwrite: Start a new zoo instead of resuming.
        allow_nonfinite: Store checkpoints with NaN/Inf weights.
        skip_errors: Skip unreadable checkpoints (reported on stderr) instead of stopping.
        compression: Compression of the parameter rows (``None``, ``lzf``, ``gzip``).
        progress: Show a progress bar.
        allow_missing: Store checkpoints without labels, label rows naming no checkpoint and empty
            cells as missing values instead of refusing (see :func:`datasets.labels.match_labels`).
        factory_spec: How the factory was named (for error messages).
    """
    out = os.fspath(out)
    files = find_checkpoints(src)
    done: set[str] = set()
    resume = os.path.exists(out) and not overwrite
    if resume:
        with ZooReader(out) as r:
            if r.num_models and "source" not in r.label_names:
                raise ZooError(f"{out} exists and has no 'source' label, so it was not made by convert; pass "
                               "--overwrite to replace it or choose another output")
            done = set(r.labels("source")) if "source" in r.label_names else set()
    todo = [(p, s) for p, s in files if s not in done]
    by_source, kinds = _labels_by_source(labels, files, [s for _, s in todo], allow_missing)
    archs = _Architectures(factory, example_inputs, factory_spec)
    workers = (os.cpu_count() or 1) if workers is None else workers
    skipped = len(files) - len(todo)
    # The pool starts before the writer opens anything, so workers inherit no HDF5 handle or lock. Like
    # torch's DataLoader, it forks where it can (workers only unpickle tensors, with one torch thread).
    pool = None
    if workers > 1 and len(todo) > 1:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = multiprocessing.get_context(method).Pool(min(workers, len(todo)), initializer=_init_worker)
    bar = tqdm(total=len(todo), unit="model", desc="convert", disable=not progress or None, file=sys.stderr)
    try:
        with ZooWriter(out, mode="a" if resume else "w", allow_nonfinite=allow_nonfinite, compression=compression,
                       label_kinds={**kinds, "source": "str"}) as writer:
            results = pool.imap(_load_job, todo, chunksize=8) if pool else map(_load_here, todo)
            block = _Block(writer)
            for source, tensors, layout_json, error in results:
                bar.update()
                try:
                    if error is not None:
                        if not skip_errors:
                            raise graphs.CheckpointError(error)
                        print(f"skipped {source}: {error}", file=sys.stderr)
                        skipped += 1
                        continue
                    sd = {k: torch.from_numpy(v) for k, v in tensors.items()} if pool else tensors
                    layout, sd, program = archs.resolve(sd, layout_json, source, writer)
                    block.add(sd, layout, {**by_source.get(source, {}), "source": source}, program, source)
                except BaseException:
                    block.flush()  # the models before this one come first, with their own errors
                    raise
            block.flush()
            total = writer.num_models
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    return ConvertResult(added=total - len(done), skipped=skipped, total=total)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` command."""
    p = subparsers.add_parser("convert", help="convert a folder of checkpoints into a zoo",
                              description="Convert .pt/.pth/.safetensors checkpoints (searched recursively) into a "
                                          "zoo file. Resumable: checkpoints already in OUT are skipped.")
    p.add_argument("src", help="folder of checkpoints, or one checkpoint")
    p.add_argument("out", help="zoo .h5 file to create or extend")
    p.add_argument("--model", help="module:factory building the architecture (for checkpoints without a layout)")
    add_example_input_argument(p, "shape of the tensor to trace the model with, e.g. 1,3,32,32 (repeat for several "
                                  "inputs; default: guessed from the model's first layer)")
    p.add_argument("--example-input-dtype", default="float32", choices=("float32", "float64", "int64"),
                   help="dtype of the example input (int64 for token ids)")
    p.add_argument("--labels", help="labels CSV/JSON; a column (file, filename, path, checkpoint, name, model, "
                                    "source) names each row's checkpoint by file name, stem or relative path")
    p.add_argument("--allow-missing", action="store_true",
                   help="store checkpoints without a labels row, rows naming no checkpoint and empty cells as missing "
                        "values (NaN, '') instead of refusing")
    p.add_argument("--workers", type=int, default=None, help="loading processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT instead of resuming")
    p.add_argument("--allow-nonfinite", action="store_true", help="store checkpoints with NaN/Inf weights")
    p.add_argument("--skip-errors", action="store_true", help="skip unreadable checkpoints instead of stopping")
    p.add_argument("--compression", choices=("lzf", "gzip"), default=None, help="compress parameter rows")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _import_external(args: argparse.Namespace) -> bool:
    """Hand a Small CNN Zoo or INR folder to its importer (``import-*`` commands have more options)."""
    for name, module, run in (("Small CNN Zoo", small_cnn_zoo, small_cnn_zoo.import_small_cnn_zoo),
                              ("INR", inr_folder, inr_folder.import_inr_folder)):
        if module.detect(args.src):
            if args.labels or args.model:
                raise ZooError(f"{args.src} is a {name} folder, which carries its own labels and architecture; "
                               "drop --labels/--model")
            n = run(args.src, args.out, append=not args.overwrite and os.path.exists(args.out),
                    allow_nonfinite=args.allow_nonfinite, progress=not args.quiet)
            print(f"{args.out}: imported {n} models from the {name} folder {args.src}")
            return True
    return False


def _run(args: argparse.Namespace) -> int:
    check_output(args.out, overwrite=True, what="zoo")  # convert resumes an existing OUT; this checks its folder
    if _import_external(args):
        return 0
    factory = load_factory(args.model)[0] if args.model else None
    example = None
    if args.example_input_shape:
        example = parse_input_shapes(args.example_input_shape, "--example-input-shape",
                                     dtype=getattr(torch, args.example_input_dtype))
    res = convert_folder(args.src, args.out, factory=factory, example_inputs=example, labels=args.labels,
                         workers=args.workers, overwrite=args.overwrite, allow_nonfinite=args.allow_nonfinite,
                         skip_errors=args.skip_errors, compression=args.compression, progress=not args.quiet,
                         allow_missing=args.allow_missing, factory_spec=args.model or "the model factory")
    print(f"{args.out}: added {res.added} models, skipped {res.skipped}, {res.total} in total")
    return 0
