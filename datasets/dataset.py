"""``ZooDataset``: a zoo split as :class:`graphs.ParamGraph` items, and ``ZooLoader``, its batched fast path.

``__init__`` reads only the small things (split indices, labels, layouts) and closes the file; each
process opens its own read-only handle on first access, so the dataset pickles to spawned DataLoader
workers. ``__getitem__`` reads one row and builds the graph with one gather.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Iterator, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torch_geometric.data import Batch

import graphs
from datasets.errors import LabelError, ZooError, ZooFormatError
from datasets.hdf5 import ZooReader, open_hdf5
from datasets.transforms import RowTransform
from graphs.batch import gather_features

__all__ = ["ZooDataset", "ZooLoader"]

_WIDTH_FIELDS = ("x", "edge_attr", "x_mask", "edge_mask")  # ParamGraph fields of width K
_RESERVED = {"x", "edge_index", "edge_attr", "node_type", "node_pos", "edge_type", "edge_param", "edge_chunk", "ints",
             "layout", "num_nodes", "y", "batch", "ptr", "zoo_index", "program", "pos", "edge_weight", "face", "time"}


class ZooDataset(Dataset):
    """The models of one split of a zoo, as graphs with their labels.

    Each item is a :class:`graphs.ParamGraph` with, besides its graph fields:

    * ``y``: ``[1, L]`` float32, the numeric labels in :attr:`label_names` order;
    * one attribute per requested label: ``[1]`` float32/int64 tensor, or a ``str``;
    * ``zoo_index``: ``[1]`` int64, the model's index in the file;
    * ``program``: ``[1]`` int64, the index of the program that runs the model (-1: none), only when the
      zoo stores programs (see :meth:`programs`).

    Args:
        path: The zoo file.
        split: A stored split (``python -m datasets split``), or ``None`` for every model.
        labels: Label columns to attach (default: every numeric column).
        transform: Row transform (see :mod:`datasets.transforms`) of the flat parameter vector,
            applied before the graph is built, e.g. ``RandomSymmetry()``.
        graph_transform: PyG-style transform of the built graph (disables :class:`ZooLoader`'s
            vectorized batching, which then batches item by item).
        feature_width: Pad ``x`` and ``edge_attr`` with zeros to this many columns, so that
            architectures of different widths (e.g. MLPs and CNNs) batch together. Crop a padded
            graph's features back (``g.x[:, :K]``) before :func:`graphs.to_state_dict`.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = "train", labels: Sequence[str] | None = None,
                 transform: RowTransform | None = None,
                 graph_transform: Callable[[graphs.ParamGraph], graphs.ParamGraph] | None = None,
                 feature_width: int | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.feature_width = feature_width
        self.split, self.transform, self.graph_transform = split, transform, graph_transform
        with ZooReader(self.path) as r:
            self.zoo_id = r.zoo_id
            self.indices = np.arange(r.num_models) if split is None else r.split(split)
            info = r.split_info()
            if split is not None and info and info["num_models"] != r.num_models:
                warnings.warn(f"split {split!r} of {self.path} covers the first {info['num_models']} of "
                              f"{r.num_models} models; re-split with `python -m datasets split {self.path}` to "
                              "include the rest", stacklevel=2)
            if labels is None:
                labels = [n for n in r.label_names if r.label_kind(n) != "str"]
            self.label_names = tuple(labels)
            columns = {n: r.labels(n)[self.indices] for n in self.label_names}
            self.fingerprints = r.fingerprints
            self._arch = r.model_arch[self.indices]
            self._row = r.model_row[self.indices]
            self._program = torch.from_numpy(r.model_program[self.indices].astype(np.int64))
            self.num_programs = len(r.programs)
            self.layouts = {fp: r.layout(fp) for fp in (r.fingerprints[a] for a in np.unique(self._arch))}
        reserved = set(_RESERVED)
        for layout in self.layouts.values():  # whatever fields graphs gives a ParamGraph
            reserved.update(graphs.vector_to_graph(torch.zeros(layout.num_params), layout).keys())
        for name in self.label_names:
            if name in reserved:
                raise LabelError(f"label {name!r} clashes with a graph field; read it with "
                                 "datasets.ZooReader(path).labels(name) instead")
        widths = {graphs.compile_layout(layout).width for layout in self.layouts.values()}
        if feature_width is not None and feature_width < max(widths, default=0):
            raise ValueError(f"feature_width={feature_width} is narrower than this split's widest graph "
                             f"({max(widths)}); use at least that")
        numeric = [n for n in self.label_names if columns[n].dtype != object]
        self.y_names = tuple(numeric)
        self._y = torch.tensor(np.stack([columns[n] for n in numeric], 1) if numeric else
                               np.zeros((len(self.indices), 0)), dtype=torch.float32)
        self._columns = {n: (torch.from_numpy(c.astype(np.float32)) if c.dtype.kind == "f" else
                             torch.from_numpy(c) if c.dtype != object else list(c)) for n, c in columns.items()}
        self._handle: tuple | None = None  # (pid, h5py.File, {fp: params}, {fp: ints}) of this process
        self._prototypes: dict = {}

    # ------------------------------------------------------------------ file handle
    def _open(self) -> tuple[dict, dict]:
        pid = os.getpid()
        if self._handle is None or self._handle[0] != pid:
            f = open_hdf5(self.path)
            if str(f.attrs.get("zoo_id", "")) != self.zoo_id:
                f.close()
                raise ZooFormatError(f"{self.path} was replaced by a different zoo since this dataset was made; "
                                     "create the ZooDataset again")
            self._handle = (pid, f, {fp: f[f"arch/{fp}/params"] for fp in self.layouts},
                            {fp: f.get(f"arch/{fp}/ints") for fp in self.layouts})
        return self._handle[2], self._handle[3]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"], state["_prototypes"] = None, {}  # h5py handles do not pickle; reopen per process
        return state

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.indices)

    def layout_of(self, i: int) -> graphs.Layout:
        """Layout of item ``i``."""
        return self.layouts[self.fingerprints[self._arch[i]]]

    def __getitem__(self, i: int) -> graphs.ParamGraph:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} models")
        i = int(i) % len(self)
        params, ints = self._open()
        fp = self.fingerprints[self._arch[i]]
        layout, row = self.layouts[fp], int(self._row[i])
        vec = torch.from_numpy(params[fp][row])
        int_vec = torch.from_numpy(ints[fp][row]) if ints[fp] is not None else None
        if self.transform is not None:
            vec = self.transform(vec, layout)
        g = self._padded(graphs.vector_to_graph(vec, layout, int_vec))
        g.y = self._y[i:i + 1]
        for name, col in self._columns.items():
            setattr(g, name, col[i] if isinstance(col, list) else col[i:i + 1])
        g.zoo_index = torch.tensor([int(self.indices[i])])
        if self.num_programs:
            g.program = self._program[i:i + 1]
        return self.graph_transform(g) if self.graph_transform is not None else g

    def _pad(self, features: torch.Tensor) -> torch.Tensor:
        extra = (self.feature_width or 0) - features.shape[1]
        return torch.nn.functional.pad(features, (0, extra)) if extra > 0 else features

    def _padded(self, g: graphs.ParamGraph) -> graphs.ParamGraph:
        """``g`` with its ``[*, K]`` fields (features and their masks) padded to ``feature_width``."""
        if self.feature_width is not None:
            for key in _WIDTH_FIELDS:
                if key in g:
                    g[key] = self._pad(g[key])
        return g

    @property
    def runnable(self) -> bool:
        """Whether every model of this split has a stored program, so probe features can run it."""
        return len(self) > 0 and bool((self._program >= 0).all())

    def programs(self) -> list[tuple[graphs.Layout, torch.export.ExportedProgram]]:
        """``(layout, program)`` of every program stored in the zoo, in index order (``item.program``).

        Programs are loaded with :func:`graphs.load_program`, which refuses bytes that could execute code.

        Raises:
            ZooError: Some models of this split have no program.
            graphs.UnsafeProgramError: A stored program is damaged or could execute code.
        """
        if not self.runnable:
            missing = int((self._program < 0).sum())
            raise ZooError(
                f"{missing} of the {len(self)} models of {self.path} (split {self.split!r}) have no stored program, "
                "so their networks cannot be run (probe features need it); add one per network function with "
                f"`python -m datasets add-program {self.path} --model FILE.py:make` (FILE.py defines make() "
                "returning the network), or train without probes (--probes 0)")
        with ZooReader(self.path) as r:
            return [(r.layout(p["fingerprint"]), graphs.load_program(r.program_bytes(i),
                                                                      f"program {i} ({p['name'] or p['digest'][:12]}) "
                                                                      f"of {self.path}"))
                    for i, p in enumerate(r.programs)]

    def nonfinite(self, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks over this split's items: a NaN/Inf numeric label, a NaN/Inf weight.

        Reads every row of the split once (in chunks of ``chunk`` rows, in file order).
        """
        bad_label = ~torch.isfinite(self._y).all(1).numpy() if self._y.shape[1] else np.zeros(len(self), bool)
        bad_weight = np.zeros(len(self), bool)
        params, ints = self._open()
        for a in np.unique(self._arch):
            pos = np.flatnonzero(self._arch == a)
            fp = self.fingerprints[a]
            for start in range(0, len(pos), chunk):
                block = pos[start:start + chunk]
                rows, _ = _read_rows(params[fp], ints[fp], self._row[block])
                bad_weight[block] = ~np.isfinite(rows).all(1)
        return bad_label, bad_weight

    def subset(self, keep: np.ndarray) -> ZooDataset:
        """A copy holding the items where the boolean mask ``keep`` is true (same file, labels, transforms)."""
        keep = np.asarray(keep, dtype=bool)
        out = copy.copy(self)
        out.indices, out._arch, out._row = self.indices[keep], self._arch[keep], self._row[keep]
        tk = torch.from_numpy(keep)
        out._program = self._program[tk]
        out._y = self._y[tk]
        out._columns = {n: ([v for v, k in zip(c, keep, strict=True) if k] if isinstance(c, list) else c[tk])
                        for n, c in self._columns.items()}
        out._handle, out._prototypes = None, {}
        return out

    def get_batch(self, positions: Sequence[int]) -> Batch:
        """Items ``positions`` as one PyG ``Batch``, equal to ``Batch.from_data_list([self[i] ...])``.

        Rows are read in sorted order; when all items share one architecture and there is no
        ``graph_transform``, the batch is assembled with one gather instead of per-item collation.
        """
        pos = np.asarray(positions, dtype=np.int64)
        if not self._gatherable(pos):
            return Batch.from_data_list([self[int(i)] for i in pos])
        return self._assemble(*self._read_block(pos))

    def _gatherable(self, pos: np.ndarray) -> bool:
        """Whether items ``pos`` can be batched by one gather (one architecture, no graph transform)."""
        arch = self._arch[pos]
        return self.graph_transform is None and len(pos) > 0 and bool((arch == arch[0]).all())

    def _read_block(self, pos: np.ndarray) -> tuple[str, np.ndarray, torch.Tensor, torch.Tensor]:
        """The I/O half of :meth:`get_batch` (runs in DataLoader workers): transformed rows of ``pos``."""
        fp = self.fingerprints[self._arch[pos[0]]]
        params, ints = self._open()
        rows, row_ints = _read_rows(params[fp], ints[fp], self._row[pos])
        vecs = torch.from_numpy(rows)
        if self.transform is not None:
            vecs = torch.stack([self.transform(v, self.layouts[fp]) for v in vecs])
        return fp, pos, vecs, torch.from_numpy(row_ints)

    def _assemble(self, fp: str, pos: np.ndarray, vecs: torch.Tensor, row_ints: torch.Tensor) -> Batch:
        """The compute half of :meth:`get_batch`: the batch of rows ``vecs`` of items ``pos``."""
        layout, b, tpos = self.layouts[fp], len(pos), torch.from_numpy(pos)
        batch = copy.copy(self._prototype(fp, b))
        x, edge_attr = gather_features(vecs, layout)
        batch.x, batch.edge_attr = self._pad(x), self._pad(edge_attr)
        batch.ints = row_ints.reshape(-1)
        batch.y = self._y[tpos]
        for name, col in self._columns.items():
            setattr(batch, name, [col[i] for i in pos] if isinstance(col, list) else col[tpos])
        batch.zoo_index = torch.from_numpy(self.indices[pos])
        if self.num_programs:
            batch.program = self._program[tpos]
        return batch

    def _prototype(self, fp: str, b: int) -> Batch:
        """A collated batch of ``b`` graphs of ``fp`` whose per-model fields get replaced."""
        key = (fp, b)
        if key not in self._prototypes:
            layout = self.layouts[fp]
            g = graphs.vector_to_graph(torch.zeros(layout.num_params, dtype=getattr(torch, layout.float_dtype)),
                                       layout, torch.zeros(layout.num_int, dtype=torch.long))
            g = self._padded(g)
            g.y = self._y[:1] * 0 if len(self) else torch.zeros(1, len(self.y_names))
            for name, col in self._columns.items():
                setattr(g, name, "" if isinstance(col, list) else col[:1] * 0)
            g.zoo_index = torch.zeros(1, dtype=torch.long)
            if self.num_programs:
                g.program = torch.zeros(1, dtype=torch.long)
            if len(self._prototypes) > 8:
                self._prototypes.clear()
            self._prototypes[key] = Batch.from_data_list([g] * b)
        return self._prototypes[key]


def _read_rows(params: h5py.Dataset, ints: h5py.Dataset | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in the order asked, each row read once, in ascending file order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), params.shape[1]), dtype=params.dtype)
    out_int = np.zeros((len(rows), ints.shape[1] if ints is not None else 0), dtype=np.int64)
    for k in order:
        out[k] = params[rows[k]]
        if ints is not None:
            out_int[k] = ints[rows[k]]
    return out, out_int


class _Batches(Dataset):
    """Index by a list of positions: DataLoader workers read (and transform) whole blocks of rows.

    What crosses the process boundary is kept small: a gatherable batch travels as its rows (two
    tensors), and :class:`ZooLoader` assembles it in the main process from a cached structure (a
    few hundred microseconds); any other batch travels without its ``layout`` list, whose compiled
    structure would otherwise be pickled per batch.
    """

    def __init__(self, dataset: ZooDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: list[int]) -> tuple:
        pos = np.asarray(positions, dtype=np.int64)
        if self.dataset._gatherable(pos):
            return ("rows", *self.dataset._read_block(pos))
        batch = self.dataset.get_batch(pos)
        fingerprints = [layout.fingerprint for layout in batch.layout]
        del batch.layout
        return ("batch", fingerprints, batch)


def _identity(item):
    return item


class ZooLoader(DataLoader):
    """DataLoader whose workers assemble whole batches with :meth:`ZooDataset.get_batch`.

    Yields the same batches as ``torch_geometric.loader.DataLoader(dataset, batch_size, shuffle)``
    would (same sampling, same contents), several times faster for small networks.

    Args:
        dataset: A :class:`ZooDataset`.
        batch_size: Graphs per batch.
        shuffle: Sample in a random order each epoch.
        drop_last: Drop a last, smaller batch.
        generator: RNG of the shuffle.
        sampler: A sampler of item positions to use instead (e.g. a ``DistributedSampler``, which
            shards the split across DDP ranks); ``shuffle`` and ``generator`` are then ignored.
        **kwargs: Passed to :class:`torch.utils.data.DataLoader` (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(self, dataset: ZooDataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 generator: torch.Generator | None = None, sampler: Sampler | None = None, **kwargs) -> None:
        base = sampler if sampler is not None else (
            RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset))
        super().__init__(_Batches(dataset), batch_size=None, sampler=BatchSampler(base, batch_size, drop_last),
                         collate_fn=_identity, **kwargs)
        self.zoo = dataset

    def __iter__(self) -> Iterator[Batch]:
        for kind, *item in super().__iter__():
            if kind == "rows":
                batch = self.zoo._assemble(*item)
                yield batch.pin_memory() if self.pin_memory else batch
            else:
                fingerprints, batch = item
                batch.layout = [self.zoo.layouts[fp] for fp in fingerprints]
                yield batch
