"""The zoo file format (``weightgraph-zoo``, version 1): schema, validation and a read-only view.

One HDF5 file holds a population of networks. Each architecture (a :class:`graphs.Layout`) is
stored once; each model is one row of parameter values in layout order::

    /                        attrs: format="weightgraph-zoo", format_version=1, num_models,
                             zoo_id (random hex, kept by appends, new for a new zoo), created_with
    /layouts/<fp>            scalar string: the Layout JSON (graphs.Layout.to_json) of fingerprint <fp>
    /arch/<fp>/params        [rows, num_params] float32|float64, chunked by rows (about 64 KiB a chunk)
    /arch/<fp>/ints          [rows, num_int] int64: integer buffers (BatchNorm counters); only if num_int > 0
    /arch/<fp>/canonical_reference  optional: [num_params] the reference a canonicalized zoo's rows are aligned
                             to (``python -m datasets canonicalize``; /arch/<fp> attr canonical says how)
    /models/fingerprints     [num_arch] string: the architectures, in order of first appearance
    /models/arch             [num_models] int32: model i's architecture (index into /models/fingerprints)
    /models/row              [num_models] int64: model i's row in /arch/<fp>/params
    /labels/<name>           [num_models] float64 | int64 | string (attr kind); missing: NaN / "";
                             /labels attr order: the columns in creation order
    /splits/<name>           sorted int64 model indices; /splits attrs: seed, names, fractions,
                             group_by, num_models (models the split covers), auto
    /stats/<fp>/<kind>_mean  [num_params] float64 normalization statistics over one split
    /stats/<fp>/<kind>_std   (kind: tensor | orbit | element; attrs split, split_digest, num_models)
    /programs/<digest>       optional: [bytes] uint8, one network function saved with torch.export.save
                             (graphs.program_bytes); attrs fingerprint (its layout), name, torch_version,
                             input_shapes (JSON); <digest> is graphs.graph_digest of the bytes; /programs
                             attr order: the programs in index order
    /models/program          optional: [num_models] int32, model i's program (index into /programs order;
                             -1: none). One layout can have several functions (relu and tanh CNNs share
                             one), so the program is per model, not per architecture.

A zoo whose models have programs is *runnable*: probe features (:mod:`graphs.probes`) evaluate its
models on inputs with no user source code. Programs are loaded with :func:`graphs.load_program`,
which refuses any file whose loading could execute code. Zoos written before programs existed
have neither entry and load unchanged; ``python -m datasets add-program`` adds them.

A zoo of one architecture is the case of a single ``/arch`` group, so adding a second architecture
never restructures the file. Files are only ever replaced whole (see :mod:`datasets.atomic`), so
every file on disk is complete; :class:`ZooReader` still checks the structure on open and names
the problem and the fix.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from datasets.errors import LabelError, ZooError, ZooFormatError
from graphs.layout import Layout

__all__ = ["FORMAT", "FORMAT_VERSION", "LABEL_KINDS", "STAT_KINDS", "ZooReader"]

FORMAT = "weightgraph-zoo"
FORMAT_VERSION = 1
LABEL_KINDS = ("float", "int", "str")
STAT_KINDS = ("tensor", "orbit", "element")
_REBUILD = "the file is inconsistent (edited outside weightgraph?); rebuild it with `python -m datasets`"


class ZooReader:
    """A validated, read-only view of a zoo file.

    Opens the file at once (use :class:`datasets.ZooDataset` for lazy, per-worker handles) and keeps
    the small per-model index arrays in memory.

    Args:
        path: The ``.h5`` file.

    Raises:
        FileNotFoundError: No file at ``path``.
        ZooFormatError: Not HDF5, truncated, not a zoo, a format version this code cannot read, or an
            inconsistent structure.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.file = open_hdf5(self.path)
        try:
            self._validate()
        except BaseException:
            self.file.close()
            raise
        self._layouts: dict = {}

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        self._check_format()
        self._check_index()
        self._check_architectures()
        self._check_columns()
        self._check_programs()

    def _check_format(self) -> None:
        f, path = self.file, self.path
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT:
            raise ZooFormatError(f"{path} is an HDF5 file but not a weightgraph zoo (format attribute: {fmt!r}); "
                                 "convert your models with `python -m datasets convert`")
        raw = f.attrs.get("format_version", -1)
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise ZooFormatError(f"{path} has a format_version attribute {raw!r} that is not a number; the file "
                                 f"is damaged or foreign: {_REBUILD}") from None
        if version > FORMAT_VERSION:
            raise ZooFormatError(f"{path} uses zoo format version {version}, newer than this weightgraph reads "
                                 f"({FORMAT_VERSION}); upgrade weightgraph")
        if version != FORMAT_VERSION:
            raise ZooFormatError(f"{path} has zoo format version {version}, which this weightgraph cannot read "
                                 f"(it reads {FORMAT_VERSION}); re-create it with `python -m datasets convert`")
        for group in ("layouts", "arch", "models", "labels", "splits"):
            if group not in f:
                raise ZooFormatError(f"{path} has no /{group} group; {_REBUILD}")

    def _check_index(self) -> None:
        f, path = self.file, self.path
        n = self.num_models = int(f.attrs["num_models"])
        self.zoo_id = str(f.attrs.get("zoo_id", ""))
        self.fingerprints: tuple[str, ...] = tuple(s.decode() for s in f["models/fingerprints"][...])
        self.model_arch = f["models/arch"][...].astype(np.int64)
        self.model_row = f["models/row"][...].astype(np.int64)
        if len(self.model_arch) != n or len(self.model_row) != n:
            raise ZooFormatError(f"{path}: the model index has {len(self.model_arch)} entries for {n} models; "
                                 + _REBUILD)
        if n and (self.model_arch.min() < 0 or self.model_arch.max() >= len(self.fingerprints)):
            raise ZooFormatError(f"{path}: /models/arch points past /models/fingerprints; {_REBUILD}")

    def _check_architectures(self) -> None:
        f, path = self.file, self.path
        for a, fp in enumerate(self.fingerprints):
            if fp not in f["layouts"] or fp not in f["arch"]:
                raise ZooFormatError(f"{path}: architecture {fp} has no /layouts or /arch entry; {_REBUILD}")
            params = f[f"arch/{fp}/params"]
            rows = self.model_row[self.model_arch == a]
            if params.ndim != 2 or (rows.size and rows.max() >= params.shape[0]) or (rows.size and rows.min() < 0):
                raise ZooFormatError(f"{path}: /arch/{fp}/params {params.shape} does not hold the rows its models "
                                     f"point to; {_REBUILD}")
            num_int = int(f[f"arch/{fp}"].attrs.get("num_int", 0))
            if num_int and f[f"arch/{fp}/ints"].shape != (params.shape[0], num_int):
                raise ZooFormatError(f"{path}: /arch/{fp}/ints does not match its params; {_REBUILD}")

    def _check_columns(self) -> None:
        f, path, n = self.file, self.path, self.num_models
        for name, ds in f["labels"].items():
            if ds.shape != (n,) or ds.attrs.get("kind") not in LABEL_KINDS:
                raise ZooFormatError(f"{path}: label column {name!r} has shape {ds.shape} / kind "
                                     f"{ds.attrs.get('kind')!r} for {n} models; {_REBUILD}")
        for name, ds in f["splits"].items():
            idx = ds[...]
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ZooFormatError(f"{path}: split {name!r} indexes models outside 0..{n - 1}; re-split it with "
                                     f"`python -m datasets split {path}`")

    def _check_programs(self) -> None:
        f, path = self.file, self.path
        group = f.get("programs")
        order = [str(d) for d in group.attrs.get("order", ())] if group is not None else []
        self.programs: tuple[dict, ...] = tuple(self._program_info(group, d) for d in order)
        if "program" in f["models"]:
            self.model_program = f["models/program"][...].astype(np.int64)
            if len(self.model_program) != self.num_models:
                raise ZooFormatError(f"{path}: /models/program has {len(self.model_program)} entries for "
                                     f"{self.num_models} models; {_REBUILD}")
        else:
            self.model_program = np.full(self.num_models, -1, np.int64)
        bad = (self.model_program < -1) | (self.model_program >= len(self.programs))
        if bad.any():
            raise ZooFormatError(f"{path}: /models/program points past /programs for model {int(np.argmax(bad))}; "
                                 "re-add the programs with `python -m datasets add-program ZOO --model FILE.py:make "
                                 "--replace`")
        has = self.model_program >= 0
        if has.any():
            own = np.array([self.fingerprints.index(p["fingerprint"]) if p["fingerprint"] in self.fingerprints
                            else -1 for p in self.programs])
            wrong = has & (own[np.maximum(self.model_program, 0)] != self.model_arch)
            if wrong.any():
                raise ZooFormatError(f"{path}: model {int(np.argmax(wrong))} points to a program of another "
                                     "architecture; re-add the programs with `python -m datasets add-program ZOO "
                                     "--model FILE.py:make --replace`")

    def _program_info(self, group, digest: str) -> dict:
        if digest not in group:
            raise ZooFormatError(f"{self.path}: /programs lists {digest} but has no such dataset; {_REBUILD}")
        a = group[digest].attrs
        try:
            shapes = json.loads(a.get("input_shapes", "[]"))
        except ValueError:
            shapes = []
        return {"digest": digest, "fingerprint": str(a.get("fingerprint", "")), "name": str(a.get("name", "")),
                "torch_version": str(a.get("torch_version", "")), "input_shapes": shapes}

    def program_bytes(self, index: int) -> bytes:
        """The saved bytes of program ``index`` (load them with :func:`graphs.load_program`)."""
        if not 0 <= index < len(self.programs):
            raise ZooError(f"{self.path} has {len(self.programs)} programs; there is no program {index}")
        return self.file[f"programs/{self.programs[index]['digest']}"][...].tobytes()

    # ------------------------------------------------------------------ architectures
    def layout_json(self, fingerprint: str) -> str:
        """The stored Layout JSON of ``fingerprint``."""
        if fingerprint not in self.file["layouts"]:
            raise ZooError(f"no architecture {fingerprint!r} in {self.path}; it has {list(self.fingerprints)}")
        raw = self.file[f"layouts/{fingerprint}"][()]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def layout(self, fingerprint: str | None = None):
        """The :class:`graphs.Layout` of ``fingerprint`` (the only one when ``None``), cached."""
        if fingerprint is None:
            if len(self.fingerprints) != 1:
                raise ZooError(f"{self.path} holds {len(self.fingerprints)} architectures; name one of "
                                 f"{list(self.fingerprints)}")
            fingerprint = self.fingerprints[0]
        if fingerprint not in self._layouts:
            try:
                layout = Layout.from_json(self.layout_json(fingerprint))
            except ValueError as exc:
                raise ZooFormatError(f"{self.path}: stored layout {fingerprint} cannot be read: {exc}") from exc
            self._layouts[fingerprint] = layout
        return self._layouts[fingerprint]

    def params(self, fingerprint: str) -> h5py.Dataset:
        """The ``[rows, num_params]`` parameter dataset of one architecture."""
        return self.file[f"arch/{fingerprint}/params"]

    def ints(self, fingerprint: str) -> h5py.Dataset | None:
        """The ``[rows, num_int]`` integer-buffer dataset of one architecture (``None`` when it has none)."""
        return self.file.get(f"arch/{fingerprint}/ints")

    def models_of(self, fingerprint: str) -> np.ndarray:
        """Indices of the models of one architecture."""
        return np.flatnonzero(self.model_arch == self.fingerprints.index(fingerprint))

    # ------------------------------------------------------------------ rows
    def read(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Model ``index`` as ``(fingerprint, params [num_params], ints [num_int])``."""
        if not 0 <= index < self.num_models:
            raise IndexError(f"model index {index} out of range for {self.num_models} models")
        fp = self.fingerprints[self.model_arch[index]]
        row = int(self.model_row[index])
        ints = self.ints(fp)
        return fp, self.params(fp)[row], ints[row] if ints is not None else np.zeros(0, np.int64)

    def read_rows(self, fingerprint: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of one architecture (any order): ``(params [k, num_params], ints [k, num_int])``.

        Reads each run of consecutive rows with one slice; a chunk shared by several rows is read once.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ds, ids = self.params(fingerprint), self.ints(fingerprint)
        out = np.empty((len(rows), ds.shape[1]), dtype=ds.dtype)
        out_int = np.empty((len(rows), ids.shape[1] if ids is not None else 0), dtype=np.int64)
        sorted_rows = rows[order]
        start = 0
        while start < len(rows):  # runs of consecutive (or equal) rows
            stop = start + 1
            while stop < len(rows) and sorted_rows[stop] - sorted_rows[stop - 1] <= 1:
                stop += 1
            lo, hi = int(sorted_rows[start]), int(sorted_rows[stop - 1]) + 1
            block = ds[lo][None] if hi - lo == 1 else ds[lo:hi]
            out[order[start:stop]] = block[sorted_rows[start:stop] - lo]
            if ids is not None:
                out_int[order[start:stop]] = ids[lo:hi][sorted_rows[start:stop] - lo]
            start = stop
        return out, out_int

    # ------------------------------------------------------------------ labels
    @property
    def label_names(self) -> tuple[str, ...]:
        """Label columns, in creation order."""
        return tuple(self.file["labels"].attrs.get("order", ()))

    def label_kind(self, name: str) -> str:
        """``float``, ``int`` or ``str``."""
        return str(self._label_ds(name).attrs["kind"])

    def labels(self, name: str) -> np.ndarray:
        """A whole label column (strings as an object array of ``str``)."""
        ds = self._label_ds(name)
        return ds.asstr()[...] if ds.attrs["kind"] == "str" else ds[...]

    def _label_ds(self, name: str) -> h5py.Dataset:
        if name not in self.file["labels"]:
            raise LabelError(f"{self.path} has no label {name!r}; it has {list(self.label_names)}")
        return self.file[f"labels/{name}"]

    # ------------------------------------------------------------------ splits and statistics
    @property
    def split_names(self) -> tuple[str, ...]:
        """Stored splits, in their stored order."""
        return tuple(self.file["splits"].attrs.get("names", ()))

    def split(self, name: str) -> np.ndarray:
        """Sorted model indices of split ``name``."""
        if name not in self.file["splits"]:
            raise ZooError(f"{self.path} has no split {name!r} (it has {list(self.split_names)}); make one with "
                           f"`python -m datasets split {self.path}`")
        return self.file[f"splits/{name}"][...]

    def split_info(self) -> dict:
        """How the splits were made: ``seed``, ``names``, ``fractions``, ``group_by``, ``num_models``, ``auto``."""
        a = self.file["splits"].attrs
        if "names" not in a:
            return {}
        return {"seed": int(a["seed"]), "names": tuple(a["names"]), "fractions": tuple(json.loads(a["fractions"])),
                "group_by": str(a["group_by"]) or None, "num_models": int(a["num_models"]), "auto": bool(a["auto"])}

    def stats(self, fingerprint: str) -> dict | None:
        """Stored normalization statistics of one architecture (see :mod:`datasets.stats`), or ``None``."""
        group = self.file.get(f"stats/{fingerprint}")
        if group is None:
            return None
        out = {k: group[k][...] for k in group}
        out.update({k: (v.decode() if isinstance(v, bytes) else v) for k, v in group.attrs.items()})
        return out

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Close the HDF5 handle."""
        self.file.close()

    def __enter__(self) -> ZooReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_models


def open_hdf5(path: str, mode: str = "r") -> h5py.File:
    """Open ``path`` with h5py, turning low-level failures into errors that say what to do."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no zoo file at {path}")
    if os.path.isdir(path):
        raise ZooFormatError(f"{path} is a directory, not a zoo file; give the .h5 file")
    if not h5py.is_hdf5(path):
        raise ZooFormatError(f"{path} is not an HDF5 file (a foreign format, or its header is damaged); zoo files "
                             "are written by `python -m datasets convert` or datasets.ZooWriter")
    try:
        return h5py.File(path, mode, rdcc_nbytes=4 << 20)
    except OSError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooFormatError(f"{path} cannot be opened ({msg}); the file is truncated or corrupt: restore a "
                             "copy or rebuild it with `python -m datasets convert`") from exc
