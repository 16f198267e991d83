"""The architecture file format (``weightgraph-archs``, version 1): write it crash-safely, read it lazily.

One HDF5 file holds a sampled architecture population (structures only, no weights)::

    /                 attrs: format="weightgraph-archs", format_version=1, num_archs, input_shape (int64
                      array), num_classes, dataset, seed, created_with
    /specs            [num_archs] string: ArchSpec JSON (datasets.archs.ArchSpec.to_json)
    /fingerprints     [num_archs] string: the graphs.Layout fingerprint of each architecture
    /num_params       [num_archs] int64: length of each architecture's parameter row (Layout.num_params)
    /layouts/<fp>     scalar string: the Layout JSON (graphs.Layout.to_json), stored once per fingerprint
    /splits/<name>    sorted int64 indices into /specs (train, val, test, wide, deep, dense, bnfree);
                      /splits attr names: the split names in order

Files are only ever replaced whole (:class:`datasets.atomic.FileTransaction`), so a write that fails
or is killed leaves any earlier file at ``path`` untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
from torch import nn

import graphs
from datasets.archs.build import build_module
from datasets.archs.space import ArchSpec
from datasets.atomic import FileTransaction
from datasets.errors import ZooError, ZooFormatError

__all__ = ["ARCHS_FORMAT", "ARCHS_FORMAT_VERSION", "ArchsReader", "write_archs"]

ARCHS_FORMAT = "weightgraph-archs"
ARCHS_FORMAT_VERSION = 1
_REBUILD = "the file is inconsistent (edited outside weightgraph?); re-create it with `python -m datasets archs`"


def write_archs(path: str | os.PathLike, specs: Sequence[ArchSpec], splits: Mapping[str, np.ndarray],
                layouts: Sequence[graphs.Layout], meta: Mapping | None = None) -> None:
    """Write an architecture file, atomically replacing ``path``.

    Args:
        path: The ``.h5`` file to write.
        specs: The architectures; all share one input shape and number of classes.
        splits: Split name -> indices into ``specs``.
        layouts: ``layouts[i]`` is the traced :class:`graphs.Layout` of ``build_module(specs[i])``.
        meta: ``dataset`` (name of the data the input shape belongs to) and ``seed`` (of the sampling).

    Raises:
        ZooError: Mismatched lengths, mixed input shapes or classes, or split indices out of range.
        ZooLockedError: Another process is writing ``path``.
    """
    meta = dict(meta or {})
    n = len(specs)
    if n == 0 or len(layouts) != n:
        raise ZooError(f"write_archs needs one layout per spec and at least one spec; got {n} specs and "
                       f"{len(layouts)} layouts")
    shapes = {(s.input_shape, s.num_classes) for s in specs}
    if len(shapes) != 1:
        raise ZooError(f"all architectures of one file share an input shape and classes; got {sorted(shapes)[:3]}")
    (input_shape, num_classes), = shapes
    split_arrays = {str(k): np.sort(np.asarray(v, dtype=np.int64)) for k, v in splits.items()}
    for name, idx in split_arrays.items():
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ZooError(f"split {name!r} indexes architectures outside 0..{n - 1}")
    txn = FileTransaction(path)
    try:
        with h5py.File(txn.begin(copy_existing=False), "w", libver=("earliest", "v110")) as f:
            f.attrs.update({"format": ARCHS_FORMAT, "format_version": ARCHS_FORMAT_VERSION, "num_archs": n,
                            "input_shape": np.asarray(input_shape, np.int64), "num_classes": int(num_classes),
                            "dataset": str(meta.get("dataset", "")), "seed": int(meta.get("seed", -1)),
                            "created_with": "weightgraph"})
            text = h5py.string_dtype()
            f.create_dataset("specs", data=np.array([s.to_json() for s in specs], dtype=object), dtype=text)
            f.create_dataset("fingerprints", data=np.array([lay.fingerprint for lay in layouts], dtype=object),
                             dtype=text)
            f.create_dataset("num_params", data=np.array([lay.num_params for lay in layouts], np.int64))
            group = f.create_group("layouts")
            for lay in layouts:
                if lay.fingerprint not in group:
                    group.create_dataset(lay.fingerprint, data=lay.to_json(), dtype=text)
            sgroup = f.create_group("splits")
            sgroup.attrs["names"] = np.array(list(split_arrays), dtype=h5py.string_dtype())
            for name, idx in split_arrays.items():
                sgroup.create_dataset(name, data=idx)
        txn.commit()
    finally:
        txn.abort()  # no-op after a commit
        txn.release()


class ArchsReader:
    """A validated, read-only view of an architecture file.

    The per-architecture index (spec strings, fingerprints, parameter counts, splits) is read on open;
    layouts are read and parsed on first use and cached per fingerprint. The HDF5 handle is reopened
    in another process (forked, or spawned from a pickled reader), so one reader can serve several
    ``DataLoader`` workers.

    Args:
        path: The ``.h5`` file written by :func:`write_archs` (``python -m datasets archs``).

    Raises:
        FileNotFoundError: No file at ``path``.
        ZooFormatError: Not HDF5, not an architecture file, another format version, or inconsistent.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file: h5py.File | None = _open(self.path)
        self._pid: int | None = os.getpid()
        try:
            self._validate()
        except BaseException:
            self._file.close()
            raise
        self._layouts: dict[str, graphs.Layout] = {}

    def _validate(self) -> None:
        f, path = self._file, self.path
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != ARCHS_FORMAT:
            raise ZooFormatError(f"{path} is an HDF5 file but not an architecture file (format attribute: {fmt!r}); "
                                 "write one with `python -m datasets archs N OUT.h5`")
        version = int(f.attrs.get("format_version", -1))
        if version != ARCHS_FORMAT_VERSION:
            newer = "upgrade weightgraph" if version > ARCHS_FORMAT_VERSION else "re-create it"
            raise ZooFormatError(f"{path} has architecture format version {version}, but this weightgraph reads "
                                 f"version {ARCHS_FORMAT_VERSION}; {newer} (`python -m datasets archs`)")
        for key in ("specs", "fingerprints", "num_params", "layouts", "splits"):
            if key not in f:
                raise ZooFormatError(f"{path} has no /{key}; {_REBUILD}")
        self._specs = f["specs"].asstr()[...]
        self._fps = f["fingerprints"].asstr()[...]
        self._num_params = f["num_params"][...].astype(np.int64)
        n = int(f.attrs.get("num_archs", -1))
        if not len(self._specs) == len(self._fps) == len(self._num_params) == n:
            raise ZooFormatError(f"{path}: /specs, /fingerprints and /num_params do not all hold {n} entries; "
                                 + _REBUILD)
        missing = sorted(set(self._fps) - set(f["layouts"]))
        if missing:
            raise ZooFormatError(f"{path}: layouts {missing[:3]} are referenced but not stored; {_REBUILD}")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["splits"].attrs.get("names", [])]
        if sorted(names) != sorted(f["splits"]):
            raise ZooFormatError(f"{path}: /splits holds {sorted(f['splits'])} but lists {names}; " + _REBUILD)
        self._splits = {name: f[f"splits/{name}"][...].astype(np.int64) for name in names}
        for name, idx in self._splits.items():
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ZooFormatError(f"{path}: split {name!r} indexes architectures outside 0..{n - 1}; "
                                     + _REBUILD)
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in f.attrs["input_shape"])
        self.num_classes = int(f.attrs["num_classes"])
        self.dataset = str(f.attrs.get("dataset", ""))
        self.seed = int(f.attrs.get("seed", -1))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._specs)

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"architecture {i} out of range: {self.path} holds {n}")
        return int(i) % n

    def spec(self, i: int) -> ArchSpec:
        """The :class:`ArchSpec` of architecture ``i``."""
        return ArchSpec.from_json(self._specs[self._index(i)])

    def fingerprint(self, i: int) -> str:
        """The layout fingerprint of architecture ``i``."""
        return str(self._fps[self._index(i)])

    def num_params(self, i: int) -> int:
        """Length of architecture ``i``'s parameter row (``Layout.num_params``)."""
        return int(self._num_params[self._index(i)])

    def layout(self, i: int) -> graphs.Layout:
        """The traced :class:`graphs.Layout` of architecture ``i`` (cached per fingerprint)."""
        fp = self.fingerprint(i)
        if fp not in self._layouts:
            raw = self._handle()[f"layouts/{fp}"][()]
            self._layouts[fp] = graphs.Layout.from_json(raw.decode() if isinstance(raw, bytes) else raw)
        return self._layouts[fp]

    def build(self, i: int) -> nn.Module:
        """A freshly initialized module of architecture ``i``."""
        return build_module(self.spec(i))

    @property
    def split_names(self) -> tuple[str, ...]:
        """Names of the stored splits."""
        return tuple(self._splits)

    def split(self, name: str) -> np.ndarray:
        """Sorted int64 indices of split ``name``."""
        if name not in self._splits:
            raise ZooError(f"{self.path} has no split {name!r}; it has {list(self._splits)}")
        return self._splits[name].copy()

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # never share an HDF5 handle across processes
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the HDF5 handle (a later layout read reopens it)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        """Pickle without the HDF5 handle (for spawned ``DataLoader`` workers); it reopens on use."""
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def __enter__(self) -> ArchsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open(path: str) -> h5py.File:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no architecture file at {path}; write one with `python -m datasets archs N {path}`")
    if os.path.isdir(path) or not h5py.is_hdf5(path):
        raise ZooFormatError(f"{path} is not an HDF5 file (a directory, a foreign format, or a damaged header); "
                             "architecture files are written by `python -m datasets archs`")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ZooFormatError(f"{path} cannot be opened ({str(exc).splitlines()[0] if str(exc) else exc!r}); it is "
                             "truncated or corrupt: re-create it with `python -m datasets archs`") from exc
