"""``ZooWriter``: add models to a zoo file in bulk, crash-safely.

Safety: the writer never opens the zoo itself for writing. It writes a private copy beside it (an
empty one for ``mode="w"``, a copy of the committed file for ``mode="a"``) and :meth:`ZooWriter.commit`
renames that copy over the zoo with ``os.replace`` (see :mod:`datasets.atomic`). A process killed at
any point therefore leaves the zoo exactly as it was at the last commit: readable, every earlier model
intact. ``tests/datasets/test_hdf5.py`` kills writers with SIGKILL at random moments to check this.

Commits happen on :meth:`close` and, when ``commit_interval`` is set, during long writes: a commit
costs one copy of the file, so the writer commits only after ``max(commit_interval, 10 x the last
copy's time)`` seconds, which keeps the copying under ~10% of the run while bounding lost work.

Speed: models are buffered and written as blocks of rows (``buffer_bytes``). Rows are stored without
compression by default: on trained float32 weights lzf saved 0% (7% with byte shuffle) and made
writing 15x and random reads up to 10x slower on our machines; ``compression="lzf"`` remains available
for zoos with many exact zeros.

Precision: rows are stored in their layout's dtype. Weights given in a wider dtype (a float64
checkpoint of a float32 architecture) are rounded to it and stored; the writer measures the rounding
and, on :meth:`ZooWriter.close`, warns once (:class:`~datasets.errors.ZooWarning`) with the number of
models that changed and the largest absolute and relative rounding error (:attr:`ZooWriter.rounding`,
a :class:`datasets.precision.RoundingReport`).
Wider values that the layout's dtype holds exactly (a float32 model saved after ``.double()``) are
stored without a word. To keep
float64, trace the architecture in float64 (a factory returning ``model.double()``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import torch

import graphs
from datasets.atomic import FileTransaction
from datasets.errors import LabelError, NonFiniteError, ZooError
from datasets.hdf5 import FORMAT, FORMAT_VERSION, LABEL_KINDS, ZooReader, open_hdf5
from datasets.labels import encode_column, h5_dtype, missing_value, value_kind
from datasets.precision import RoundingReport
from datasets.splits import DEFAULT_SPLIT, SplitSpec, make_splits

__all__ = ["ZooWriter"]

_CHUNK_BYTES = 64 << 10      # target chunk: a few small models, or one row slice of a big one
_MAX_CHUNK_BYTES = 16 << 20  # split rows wider than this into column chunks


@dataclass
class _Segment:
    arch: int
    params: np.ndarray   # [k, num_params]
    ints: np.ndarray     # [k, num_int]
    labels: dict         # name -> [k] encoded values (see datasets.labels.encode_column)
    program: int = -1    # the rows' program (index into /programs), -1: none


class ZooWriter:
    """Write models (rows of parameters in layout order) and their labels into a zoo file.

    Args:
        path: The zoo file.
        mode: ``"w"`` makes a new zoo (replacing ``path`` on commit); ``"a"`` appends to ``path``
            (created when missing).
        allow_nonfinite: Store models with NaN/Inf weights instead of raising :class:`NonFiniteError`.
        compression: ``None`` (default), ``"lzf"`` or ``"gzip"`` for new parameter datasets.
        default_split: Splits written on :meth:`close` when the zoo has none, or refreshed when the
            zoo's splits were written this way and models were added since (``None``: never).
        label_kinds: Kinds (``float``/``int``/``str``) of label columns, overriding inference from the
            first value.
        commit_interval: Seconds between automatic commits during long writes (``None``: only on close).
        buffer_bytes: Buffered row bytes that trigger a write into the private copy.

    Example:
        >>> with ZooWriter("zoo.h5") as w:  # doctest: +SKIP
        ...     w.add(model, layout, labels={"test_acc": 0.91, "run": 3})
    """

    def __init__(self, path: str | os.PathLike, mode: str = "w", *, allow_nonfinite: bool = False,
                 compression: str | None = None, default_split: SplitSpec | None = DEFAULT_SPLIT,
                 label_kinds: Mapping[str, str] | None = None, commit_interval: float | None = 60.0,
                 buffer_bytes: int = 64 << 20) -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' (new zoo) or 'a' (append), got {mode!r}")
        if compression not in (None, "lzf", "gzip"):
            raise ValueError(f"compression must be None, 'lzf' or 'gzip', got {compression!r}")
        for name, kind in (label_kinds or {}).items():
            if kind not in LABEL_KINDS:
                raise LabelError(f"label_kinds[{name!r}] = {kind!r}; use one of {LABEL_KINDS}")
        self.path = os.fspath(path)
        self.allow_nonfinite, self.compression, self.default_split = allow_nonfinite, compression, default_split
        self.label_kinds = dict(label_kinds or {})
        self.commit_interval, self.buffer_bytes = commit_interval, buffer_bytes
        self._txn = FileTransaction(self.path)  # the writer lock, held until close/abort
        self._file: h5py.File | None = None
        append = mode == "a" and os.path.exists(self.path)
        try:
            if append:  # validate and read the committed state; copy the file on the first write only
                with ZooReader(self.path) as reader:
                    self._load_state(reader.fingerprints, reader.num_models,
                                     {n: reader.label_kind(n) for n in reader.label_names},
                                     [(p["fingerprint"], p["digest"]) for p in reader.programs])
            else:
                self._create()
        except BaseException:
            self._txn.abort()
            self._txn.release()
            raise
        self._segments: list[_Segment] = []
        self._buffered = 0
        self._buffered_bytes = 0
        self._last_commit = time.monotonic()
        self._dirty = not append  # a new zoo is committed on close even when empty
        self._rows_since_splits = False  # rows written since the default splits were last checked
        self.rounding = RoundingReport()
        """Models whose weights were rounded to their layout's dtype, and the largest rounding errors."""

    # ------------------------------------------------------------------ opening
    def _create(self) -> None:
        """Start an empty zoo in a new private file."""
        f = self._file = h5py.File(self._txn.begin(copy_existing=False), "w", libver=("earliest", "v110"))
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "num_models": 0,
                        "zoo_id": uuid.uuid4().hex, "created_with": "weightgraph"})
        for group in ("layouts", "arch", "labels", "splits", "stats"):
            f.create_group(group)
        f["labels"].attrs["order"] = np.array([], dtype=h5py.string_dtype())
        models = f.create_group("models")
        models.create_dataset("fingerprints", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(64,))
        models.create_dataset("arch", (0,), np.int32, maxshape=(None,), chunks=(16384,))
        models.create_dataset("row", (0,), np.int64, maxshape=(None,), chunks=(16384,))
        self._load_state((), 0, {})

    def _load_state(self, fingerprints, num_models: int, kinds: dict[str, str],
                    programs: Sequence[tuple[str, str]] = ()) -> None:
        self._fps = list(fingerprints)
        self._programs = list(programs)  # (fingerprint, digest) of every stored program, in index order
        self._arch_info: dict[str, tuple[int, int, int, str]] = {}
        self._n = num_models
        self._kinds = dict(kinds)

    def _writable(self) -> h5py.File:
        """The private copy, made from the committed file on the first write after opening or a commit."""
        if self._file is None:
            self._file = open_hdf5(self._txn.begin(copy_existing=True), "r+")
        return self._file

    # ------------------------------------------------------------------ adding models
    @property
    def num_models(self) -> int:
        """Models in the zoo once everything added so far is committed."""
        return self._n + self._buffered

    def add(self, model_or_state_dict, layout, labels: Mapping | None = None, program: int = -1) -> int:
        """Add one network (an ``nn.Module`` or a state_dict matching ``layout``); return its index.

        ``program`` is the index (from :meth:`add_program`) of the program that runs it, -1 for none.

        Raises:
            graphs.LayoutMismatchError: Keys or shapes differ from the layout.
            NonFiniteError: A NaN/Inf weight (unless ``allow_nonfinite``).
        """
        vec = graphs.flatten_state_dict(model_or_state_dict, layout)
        sd = model_or_state_dict.state_dict() if hasattr(model_or_state_dict, "state_dict") else model_or_state_dict
        wide = [sd[p.name].dtype for p in layout.params if sd[p.name].dtype.is_floating_point
                and sd[p.name].dtype.itemsize > vec.dtype.itemsize]
        if wide:  # keep the given precision until add_rows, which measures the rounding
            vec = torch.cat([sd[p.name].detach().reshape(-1).to("cpu", max(wide, key=lambda d: d.itemsize))
                             for p in layout.params])
        ints = graphs.flatten_int_buffers(model_or_state_dict, layout)
        return self.add_rows(layout, vec.numpy()[None], ints.numpy()[None],
                             {k: [v] for k, v in (labels or {}).items()}, program=program)

    def add_rows(self, layout, params: np.ndarray, ints: np.ndarray | None = None,
                 labels: Mapping[str, Sequence] | None = None, program: int = -1) -> int:
        """Add ``k`` models of one architecture at once; return the index of the first.

        Args:
            layout: Their :class:`graphs.Layout`.
            params: ``[k, layout.num_params]`` values in layout order (``graphs.flatten_state_dict``).
            ints: ``[k, layout.num_int]`` integer buffers (zeros when ``None``).
            labels: ``{name: k values}``; ``None``/NaN marks a missing value.
            program: Index of the models' program (:meth:`add_program`); -1 for none.
        """
        arch, num_params, num_int, dtype = self._arch(layout)
        self._check_program_index(program, layout)
        params = np.asarray(params)
        k = params.shape[0] if params.ndim == 2 else -1
        if params.ndim != 2 or params.shape[1] != num_params:
            raise graphs.LayoutMismatchError(f"params have shape {params.shape}, layout "
                                             f"{layout.name}#{layout.fingerprint} "
                                             f"needs [k, {num_params}]; flatten each state_dict with "
                                             "graphs.flatten_state_dict(sd, layout)")
        ints = np.zeros((k, num_int), np.int64) if ints is None else np.asarray(ints, dtype=np.int64)
        if ints.shape != (k, num_int):
            raise graphs.LayoutMismatchError(f"ints have shape {ints.shape}, layout {layout.fingerprint} needs "
                                      f"({k}, {num_int})")
        labels = {str(name): list(values) for name, values in (labels or {}).items()}
        given = params
        params = params.astype(dtype, copy=False)
        if given.dtype.kind == "f" and given.dtype.itemsize > params.dtype.itemsize:
            self.rounding.note(given, params, f"{layout.name or ''}#{layout.fingerprint}")
        if not self.allow_nonfinite and not np.isfinite(params).all():
            self._raise_nonfinite(params, layout, labels)
        labels = self._encode_labels(labels, k)
        first = self.num_models
        self._segments.append(_Segment(arch, params, ints, labels, int(program)))
        self._buffered += k
        self._buffered_bytes += params.nbytes + ints.nbytes
        self._dirty = True
        if self._buffered_bytes >= self.buffer_bytes:
            self.flush()
        return first

    # ------------------------------------------------------------------ programs
    def add_program(self, layout, program, name: str = "") -> int:
        """Store the function of an architecture (once) and return its index, for :meth:`add`/:meth:`add_rows`.

        Args:
            layout: The architecture's Layout.
            program: A ``torch.export.ExportedProgram`` or its saved bytes (:func:`graphs.program_bytes`),
                e.g. the program of :func:`graphs.trace_program`. The same function added twice gets one index.
            name: A human-readable name (``cnn-relu``).

        Raises:
            graphs.UnsafeProgramError: The bytes are not a program, or loading them could execute code.
            graphs.LayoutMismatchError: The program's parameters do not match the layout.
        """
        data = program if isinstance(program, (bytes, bytearray)) else graphs.program_bytes(program)
        data = bytes(data)
        digest = graphs.graph_digest(data)
        key = (layout.fingerprint, digest)
        if key in self._programs:
            return self._programs.index(key)
        loaded = graphs.load_program(data, f"program {name or digest[:12]}")
        self._check_program_params(loaded, layout, name or digest[:12])
        self._arch(layout)
        f = self._writable()
        group = f.require_group("programs")
        ds_name = digest if digest not in group else f"{digest}-{len(self._programs)}"
        ds = group.create_dataset(ds_name, data=np.frombuffer(data, np.uint8))
        ds.attrs.update({"fingerprint": layout.fingerprint, "name": str(name), "torch_version": str(torch.__version__),
                         "input_shapes": json.dumps(graphs.program_input_shapes(loaded))})
        group.attrs["order"] = np.array([str(d) for d in group.attrs.get("order", ())] + [ds_name],
                                        dtype=h5py.string_dtype())
        self._programs.append(key)
        self._dirty = True
        return len(self._programs) - 1

    @staticmethod
    def _check_program_params(program, layout, what: str) -> None:
        state = {**program.state_dict, **getattr(program, "constants", {})}
        for spec in layout.params:
            t = state.get(spec.name)
            if t is None or tuple(t.shape) != tuple(spec.shape):
                raise graphs.LayoutMismatchError(
                    f"program {what} does not run architecture {layout.name}#{layout.fingerprint}: its tensor "
                    f"{spec.name!r} is {'missing' if t is None else tuple(t.shape)}, the layout has "
                    f"{tuple(spec.shape)}; export the network whose rows these are")

    def _check_program_index(self, program: int, layout) -> None:
        if program == -1:
            return
        if not 0 <= program < len(self._programs):
            raise ValueError(f"program index {program} is not one of this zoo's {len(self._programs)} programs; "
                             "use the index returned by add_program")
        if self._programs[program][0] != layout.fingerprint:
            raise graphs.LayoutMismatchError(f"program {program} belongs to architecture "
                                             f"{self._programs[program][0]}, not {layout.fingerprint}")

    def set_program(self, indices: Sequence[int], program: int) -> None:
        """Point stored models ``indices`` (all of one architecture) at ``program`` (-1: none)."""
        self.flush()
        f = self._writable()
        idx = np.asarray(indices, np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise ValueError(f"model indices must be in 0..{self._n - 1}")
        arch = f["models/arch"][...][idx]
        if program != -1 and idx.size:
            if not 0 <= program < len(self._programs):
                raise ValueError(f"program index {program} is not one of this zoo's {len(self._programs)} programs")
            own = self._fps.index(self._programs[program][0])
            if (arch != own).any():
                raise graphs.LayoutMismatchError(f"program {program} belongs to architecture "
                                                 f"{self._programs[program][0]}, which not all these models have")
        column = self._program_column(f)
        values = column[...]
        values[idx] = program
        column[...] = values
        self._dirty = True

    def _program_column(self, f: h5py.File) -> h5py.Dataset:
        if "program" not in f["models"]:
            f["models"].create_dataset("program", data=np.full(self._n, -1, np.int32), maxshape=(None,),
                                       chunks=(16384,))
        return f["models/program"]

    def _encode_labels(self, labels: dict[str, list], k: int) -> dict[str, np.ndarray]:
        """Check ``k`` models' labels against the columns' kinds (before anything is buffered) and encode them."""
        new_kinds = {}
        for name, values in labels.items():
            if len(values) != k:
                raise LabelError(f"label column {name!r} has {len(values)} values for {k} models; give one "
                                 "value per model (None for a missing one)")
            if name not in self._kinds:
                if not name or "/" in name:
                    raise LabelError(f"label name {name!r} must be non-empty and contain no '/'")
                kind = self.label_kinds.get(name) or next((value_kind(v) for v in values if value_kind(v)), "float")
                if self.num_models:
                    missing_value(kind, name)  # the models before this one lack the new column
                new_kinds[name] = kind
        kinds = {**self._kinds, **new_kinds}
        out = {name: encode_column(name, kinds[name], labels.get(name, [None] * k)) for name in kinds}
        self._kinds = kinds
        return out

    def _raise_nonfinite(self, params: np.ndarray, layout, labels: dict) -> None:
        r = int(np.flatnonzero(~np.isfinite(params).all(axis=1))[0])
        col = int(np.flatnonzero(~np.isfinite(params[r]))[0])
        tensor = next((p.name for p in layout.params if p.offset <= col < p.offset + p.numel), "?")
        source = labels.get("source", [None] * len(params))[r]
        where = f"model {self.num_models + r}" + (f" ({source})" if source else "")
        raise NonFiniteError(f"{where} has {int((~np.isfinite(params[r])).sum())} NaN/Inf weights (first in "
                             f"{tensor!r}); drop or fix it, or pass allow_nonfinite=True (CLI: --allow-nonfinite) "
                             "to store it anyway")

    def _arch(self, layout) -> tuple[int, int, int, str]:
        """``(index, num_params, num_int, float_dtype)`` of an architecture, stored on first use."""
        fp = layout.fingerprint
        if fp not in self._arch_info:
            index = self._fps.index(fp) if fp in self._fps else self._store_layout(layout)
            self._arch_info[fp] = (index, layout.num_params, layout.num_int, layout.float_dtype)
        return self._arch_info[fp]

    def _store_layout(self, layout) -> int:
        fp = layout.fingerprint
        f = self._writable()
        if layout.num_params == 0:
            raise ValueError(f"layout {layout.name}#{fp} has no float parameters; there is nothing to store")
        f["layouts"].create_dataset(fp, data=layout.to_json(), dtype=h5py.string_dtype())
        group = f["arch"].create_group(fp)
        group.attrs.update({"num_params": layout.num_params, "num_int": layout.num_int, "name": layout.name})
        itemsize = np.dtype(layout.float_dtype).itemsize
        row_bytes = layout.num_params * itemsize
        rows = int(min(256, max(1, round(_CHUNK_BYTES / row_bytes))))
        cols = layout.num_params if row_bytes <= _MAX_CHUNK_BYTES else _MAX_CHUNK_BYTES // itemsize
        group.create_dataset("params", (0, layout.num_params), layout.float_dtype, maxshape=(None, layout.num_params),
                             chunks=(rows, cols), compression=self.compression)
        if layout.num_int:
            group.create_dataset("ints", (0, layout.num_int), np.int64, maxshape=(None, layout.num_int),
                                 chunks=(max(1, 4096 // layout.num_int), layout.num_int))
        names = f["models/fingerprints"]
        names.resize((len(self._fps) + 1,))
        names[-1] = fp
        self._fps.append(fp)
        return len(self._fps) - 1

    # ------------------------------------------------------------------ writing buffered models
    def flush(self) -> None:
        """Write buffered models into the private copy (and commit if ``commit_interval`` has passed)."""
        if self._segments:
            self._write_segments()
        if self.commit_interval is not None and self._dirty:
            wait = max(self.commit_interval, 10 * self._txn.last_copy_seconds)
            if time.monotonic() - self._last_commit >= wait:
                self.commit()

    def _write_segments(self) -> None:
        f, segs, n = self._writable(), self._segments, self._n
        m = sum(len(s.params) for s in segs)
        arch = np.concatenate([np.full(len(s.params), s.arch, np.int32) for s in segs])
        row = np.empty(m, np.int64)
        for a in np.unique(arch):
            group = f[f"arch/{self._fps[a]}"]
            mine = [s for s in segs if s.arch == a]
            block = np.concatenate([s.params for s in mine])
            start = group["params"].shape[0]
            group["params"].resize(start + len(block), axis=0)
            group["params"][start:] = block
            if "ints" in group:
                group["ints"].resize(start + len(block), axis=0)
                group["ints"][start:] = np.concatenate([s.ints for s in mine])
            row[arch == a] = np.arange(start, start + len(block))
        self._write_labels(f, segs, n, m)
        if "program" in f["models"] or any(s.program >= 0 for s in segs):
            column = self._program_column(f)
            column.resize((n + m,))
            column[n:] = np.concatenate([np.full(len(s.params), s.program, np.int32) for s in segs])
        for name, values in (("arch", arch), ("row", row)):
            f[f"models/{name}"].resize((n + m,))
            f[f"models/{name}"][n:] = values
        self._n = n + m
        self._rows_since_splits = True
        f.attrs["num_models"] = self._n
        self._segments, self._buffered, self._buffered_bytes = [], 0, 0

    def _write_labels(self, f: h5py.File, segs: list[_Segment], n: int, m: int) -> None:
        for name, kind in self._kinds.items():  # labels were checked when added: nothing here can fail
            if name not in f["labels"]:  # a new column; the models before it get the missing value
                ds = f["labels"].create_dataset(name, (n,), h5_dtype(kind), maxshape=(None,), chunks=(4096,))
                ds.attrs["kind"] = kind
                if n:
                    ds[:] = encode_column(name, kind, [None] * n)
                f["labels"].attrs["order"] = np.array(list(f["labels"].attrs["order"]) + [name],
                                                      dtype=h5py.string_dtype())
            parts = [s.labels[name] if name in s.labels else encode_column(name, kind, [None] * len(s.params))
                     for s in segs]
            ds = f[f"labels/{name}"]
            ds.resize((n + m,))
            ds[n:] = np.concatenate(parts) if kind != "str" else np.concatenate(parts).astype(object)

    # ------------------------------------------------------------------ splits and statistics
    @property
    def label_names(self) -> tuple[str, ...]:
        """Label columns written so far (flushes the buffer)."""
        self.flush()
        return tuple(self._kinds)

    def labels(self, name: str) -> np.ndarray:
        """A label column of every model written so far (flushes the buffer)."""
        self.flush()
        ds = self._writable()[f"labels/{name}"]
        return ds.asstr()[...] if ds.attrs["kind"] == "str" else ds[...]

    def set_splits(self, splits: Mapping[str, np.ndarray], spec: SplitSpec, auto: bool = False) -> None:
        """Replace the stored splits (and drop normalization statistics, which depend on them)."""
        self.flush()
        f = self._writable()
        for group in ("splits", "stats"):
            del f[group]
            f.create_group(group)
        for name in spec.names:
            f["splits"].create_dataset(name, data=np.asarray(splits[name], np.int64))
        f["splits"].attrs.update({"seed": spec.seed, "names": list(spec.names), "group_by": spec.group_by or "",
                                  "fractions": json.dumps(list(spec.fractions)), "num_models": self._n, "auto": auto})
        self._dirty = True

    def replace_params(self, fingerprint: str, start: int, block: np.ndarray) -> None:
        """Overwrite stored parameter rows ``start .. start + len(block)`` of one architecture.

        For functions of the rows that keep each model's meaning (e.g. applying a symmetry). The
        architecture's normalization statistics are dropped, since per-entry statistics change.
        """
        self.flush()
        f = self._writable()
        if fingerprint not in f["arch"]:
            raise ZooError(f"{self.path} has no architecture {fingerprint}")
        params = f[f"arch/{fingerprint}/params"]
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != params.shape[1] or not 0 <= start <= params.shape[0] - len(block):
            raise ValueError(f"rows {start}..{start + len(block)} of shape {block.shape[1:]} do not fit the stored "
                             f"{params.shape} parameters of architecture {fingerprint}")
        params[start:start + len(block)] = block.astype(params.dtype, copy=False)
        if fingerprint in f["stats"]:
            del f[f"stats/{fingerprint}"]
        self._dirty = True

    def set_arch_attrs(self, fingerprint: str, attrs: Mapping) -> None:
        """Record attributes of one stored architecture (e.g. how its rows were canonicalized)."""
        f = self._writable()
        f[f"arch/{fingerprint}"].attrs.update(dict(attrs))
        self._dirty = True

    def set_arch_dataset(self, fingerprint: str, name: str, data: np.ndarray) -> None:
        """Store (or replace) an array beside one architecture's rows (e.g. its canonical reference)."""
        if name in ("params", "ints"):
            raise ValueError(f"{name!r} holds the models' rows; use add_rows / replace_params")
        f = self._writable()
        group = f[f"arch/{fingerprint}"]
        if name in group:
            del group[name]
        group.create_dataset(name, data=np.asarray(data))
        self._dirty = True

    def set_stats(self, fingerprint: str, arrays: Mapping[str, np.ndarray], attrs: Mapping) -> None:
        """Store normalization statistics of one architecture (see :mod:`datasets.stats`)."""
        f = self._writable()
        if fingerprint in f["stats"]:
            del f[f"stats/{fingerprint}"]
        group = f["stats"].create_group(fingerprint)
        for key, value in arrays.items():
            group.create_dataset(key, data=value)
        group.attrs.update(dict(attrs))
        self._dirty = True

    def _refresh_auto_splits(self) -> None:
        self._rows_since_splits = False
        f = self._writable()
        info = f["splits"].attrs
        stale_auto = "names" in info and bool(info["auto"]) and int(info["num_models"]) != self._n
        if self.default_split is None or not self._n or ("names" in info and not stale_auto):
            return
        spec = self.default_split
        groups = self.labels(spec.group_by) if spec.group_by else None
        self.set_splits(make_splits(self._n, spec, groups), spec, auto=True)

    # ------------------------------------------------------------------ committing
    def commit(self) -> None:
        """Write everything added so far and atomically replace the zoo file with it."""
        if self._segments:
            self._write_segments()
        if self._file is not None:
            self._file.close()
            self._file = None
            self._txn.commit()
        self._last_commit = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        """Write default splits if needed, commit, and release the file."""
        if self._txn is None:
            return
        try:
            if self._segments:
                self._write_segments()
            if self._dirty or self._rows_since_splits:  # also when a periodic commit took the last rows
                self._refresh_auto_splits()
            if self._dirty:
                self.commit()
        except BaseException:
            self.abort()
            raise
        self._txn.release()
        self._txn = None
        self.rounding.warn()

    def abort(self) -> None:
        """Drop everything not yet committed; the zoo file stays at its last committed version."""
        if self._txn is None:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        self._txn.abort()
        self._txn.release()
        self._txn = None

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
