"""Classification data for zoo builders, from packages (offline) or from files a user already has.

Every source returns an :class:`ArrayData`: float32 inputs ``[N, C, *spatial]`` scaled to ``[-1, 1]``
(as the Small CNN Zoo did) and int64 labels, with a fixed train/test split. Nothing is downloaded:

* ``digits``: scikit-learn ``load_digits`` (1,797 8x8 images; a fixed stratified 80/20 split);
* ``mnist1d``: the ``mnist1d`` package's ``make_dataset`` generator (4,000 + 1,000 signals of length 40);
* ``mnist``: MNIST/Fashion-MNIST idx files (``train-images-idx3-ubyte[.gz]`` ...) in a folder you give;
* ``cifar10``: the CIFAR-10 python pickles (``data_batch_1`` ... ``test_batch``) in a folder you give,
  read with an unpickler that admits only the numpy array constructors (no code runs from the file);
* ``folder``: ``ROOT/<class name>/*.png|jpg``; each subfolder is a class, 20% of each class is test.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.errors import ZooError

__all__ = ["ArrayData", "DATA_SOURCES", "IMAGE_SUFFIXES", "list_class_folders", "load_cifar10", "load_data",
           "load_digits_data", "load_image_folder",
           "load_mnist1d", "load_mnist_idx", "load_named_or_path", "read_image"]


@dataclass
class ArrayData:
    """A classification dataset held in memory.

    Attributes:
        name: Source name, stored as a label of every model trained on it.
        x_train: Inputs ``[N, C, *spatial]`` float32 in ``[-1, 1]``.
        y_train: Labels ``[N]`` int64.
        x_test: Inputs ``[M, C, *spatial]``.
        y_test: Labels ``[M]``.
        num_classes: Number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        """Input channels."""
        return int(self.x_train.shape[1])

    @property
    def in_size(self) -> tuple[int, ...]:
        """Spatial input size."""
        return tuple(int(s) for s in self.x_train.shape[2:])

    def subsample_train(self, fraction: float, seed: int) -> ArrayData:
        """A copy whose training set keeps ``fraction`` of the examples (chosen by ``seed``)."""
        if not 0 < fraction <= 1:
            raise ZooError(f"train fraction must be in (0, 1], got {fraction}")
        if fraction == 1:
            return self
        n = max(self.num_classes, int(round(fraction * len(self.y_train))))
        idx = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(seed))[:n]
        return ArrayData(self.name, self.x_train[idx], self.y_train[idx], self.x_test, self.y_test,
                         self.num_classes)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _make(name: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> ArrayData:
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    g = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    return ArrayData(name, f(x), g(y), f(xt), g(yt), int(max(y.max(), yt.max())) + 1)


def load_digits_data(test_fraction: float = 0.2, split_seed: int = 0) -> ArrayData:
    """scikit-learn's 8x8 digits as ``[N, 1, 8, 8]`` in ``[-1, 1]``, stratified split (fixed by ``split_seed``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ZooError("the 'digits' data needs scikit-learn: pip install -c constraints.txt "
                          "'weightgraph[data]'") from exc
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 * 2 - 1)[:, None]
    tr, te = _stratified_split(d.target, test_fraction, split_seed)
    return _make("digits", x[tr], d.target[tr], x[te], d.target[te])


def load_mnist1d(seed: int = 42) -> ArrayData:
    """The MNIST-1D generator (``mnist1d.data.make_dataset``, offline) as ``[N, 1, 40]``, standardized."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ZooError("the 'mnist1d' data needs the mnist1d package: pip install -c constraints.txt "
                          "'weightgraph[data]'") from exc
    args = get_dataset_args()
    args.seed = seed
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; leave it as we found it
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    scale = float(np.abs(d["x"]).max())
    return _make("mnist1d", d["x"][:, None] / scale, d["y"], d["x_test"][:, None] / scale, d["y_test"])


def _find(root: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = root / (stem + suffix)
            if p.is_file():
                return p
    raise FileNotFoundError(f"none of {[s + '[.gz]' for s in stems]} in {root}; give the folder that holds "
                            "the four MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped or not)")


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ZooError(f"{path} is not an unsigned-byte idx file (magic {raw[:4].hex()!r})")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ZooError(f"{path} is truncated: header says {tuple(dims)}, found {data.size} values")
    return data.reshape(tuple(int(d) for d in dims))


def load_mnist_idx(path: str | os.PathLike, name: str = "mnist") -> ArrayData:
    """MNIST or Fashion-MNIST from the four idx files (optionally ``.gz``) in folder ``path``."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {root}")
    parts = [_read_idx(_find(root, (f"{split}-{kind}-idx{n}-ubyte", f"{split}-{kind}.idx{n}-ubyte")))
             for split in ("train", "t10k") for kind, n in (("images", 3), ("labels", 1))]
    x, y, xt, yt = parts
    to = lambda a: (a.astype(np.float32) / 255.0 * 2 - 1)[:, None]  # noqa: E731
    return _make(name, to(x), y, to(xt), yt)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a pickled numpy array needs and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle (only numpy "
                                         "arrays are allowed): this is not a CIFAR-10 python batch file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(d[b"labels"], dtype=np.int64)


def load_cifar10(path: str | os.PathLike, grayscale: bool = False) -> ArrayData:
    """CIFAR-10 from the python batches in ``path`` (the ``cifar-10-batches-py`` folder or its parent).

    Args:
        path: Folder with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``.
        grayscale: Average the channels (the Small CNN Zoo trained on grayscale CIFAR-10).
    """
    root = Path(path)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)] + [root / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 python batches missing in {root}: {missing}; extract "
                                "cifar-10-python.tar.gz and give the cifar-10-batches-py folder")
    batches = [_read_cifar_batch(f) for f in files]
    x = np.concatenate([b[0] for b in batches[:5]])
    y = np.concatenate([b[1] for b in batches[:5]])
    xt, yt = batches[5]
    to = lambda a: a.astype(np.float32) / 255.0 * 2 - 1  # noqa: E731
    x, xt = to(x), to(xt)
    if grayscale:
        x, xt = x.mean(1, keepdims=True), xt.mean(1, keepdims=True)
    return _make("cifar10-gray" if grayscale else "cifar10", x, y, xt, yt)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None, channels: int = 1) -> np.ndarray:
    """Read an image file as float32 ``[channels, H, W]`` in ``[0, 1]``, optionally resized (bilinear)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ZooError("reading image files needs Pillow: pip install pillow") from exc
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def list_class_folders(path: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """``[(class name, sorted image paths)]`` for ``ROOT/<class>/*.<image suffix>``, classes sorted."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = [(d.name, sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
               for d in sorted(root.iterdir()) if d.is_dir()]
    classes = [(n, ps) for n, ps in classes if ps]
    if not classes:
        raise FileNotFoundError(f"no class subfolders with images in {root}; expected ROOT/<class>/*.png")
    return classes


def load_image_folder(path: str | os.PathLike, size: tuple[int, int] = (28, 28), channels: int = 1,
                      test_fraction: float = 0.2, split_seed: int = 0) -> ArrayData:
    """A class-per-subfolder image dataset, resized to ``size``, with a stratified split."""
    xs, ys = [], []
    for label, (_, paths) in enumerate(list_class_folders(path)):
        xs += [read_image(p, size, channels) for p in paths]
        ys += [label] * len(paths)
    x, y = np.stack(xs) * 2 - 1, np.asarray(ys)
    tr, te = _stratified_split(y, test_fraction, split_seed)
    return _make(f"folder:{Path(path).name}", x[tr], y[tr], x[te], y[te])


DATA_SOURCES = ("digits", "mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar10-gray", "folder")


def load_data(source: str, path: str | os.PathLike | None = None) -> ArrayData:
    """Load a classification source by name (see the module docstring); ``path`` for file-based ones."""
    if source == "digits":
        return load_digits_data()
    if source == "mnist1d":
        return load_mnist1d()
    if source not in DATA_SOURCES:
        raise ZooError(f"unknown data source {source!r}; choose one of {DATA_SOURCES}")
    if path is None:
        raise ZooError(f"data source {source!r} is read from files: pass --data-path (no data is ever "
                         "downloaded)")
    if source in ("mnist", "fashion_mnist"):
        return load_mnist_idx(path, name=source)
    if source in ("cifar10", "cifar10-gray"):
        return load_cifar10(path, grayscale=source == "cifar10-gray")
    return load_image_folder(path)


def load_named_or_path(source: str) -> ArrayData:
    """A packaged source by name (``digits``, ``mnist1d``) or a folder.

    A folder is read as MNIST idx files, CIFAR-10 pickles or ``ROOT/<class>/*.png``, tried in that order.
    """
    if source in ("digits", "mnist1d"):
        return load_data(source)
    root = Path(source)
    if not root.is_dir():
        raise ZooError(f"{source!r} is neither a packaged dataset (digits, mnist1d) nor a folder; give a folder "
                       "of MNIST idx files, CIFAR-10 python batches or ROOT/<class>/*.png images")
    if any(root.glob("train-images*")):
        return load_mnist_idx(root)
    if (root / "data_batch_1").is_file() or (root / "cifar-10-batches-py").is_dir():
        return load_cifar10(root)
    return load_image_folder(root)
