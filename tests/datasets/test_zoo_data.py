"""Data sources of the zoo builders: packaged data offline, and files in their published formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from datasets.errors import ZooError
from datasets.zoo.data import load_cifar10, load_data, load_digits_data, load_image_folder, load_mnist1d, load_mnist_idx
from datasets.zoo.images import load_images


def test_digits_split_is_fixed_stratified_and_scaled():
    a, b = load_digits_data(), load_digits_data()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape[1:] == (1, 8, 8) and len(a.y_train) + len(a.y_test) == 1797
    assert a.x_train.min() >= -1 and a.x_train.max() <= 1 and a.num_classes == 10
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38  # 20% of each class


def test_mnist1d_generates_offline_and_leaves_numpy_rng_alone():
    pytest.importorskip("mnist1d")  # the optional data extra; installed by make setup
    state = np.random.get_state()[1].copy()
    d = load_mnist1d()
    assert np.array_equal(np.random.get_state()[1], state)
    assert d.x_train.shape == (4000, 1, 40) and d.x_test.shape == (1000, 1, 40) and d.num_classes == 10


def _write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as fh:
        fh.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    x, xt = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (5, 28, 28))
    y, yt = np.arange(12) % 10, np.arange(5)
    suffix = ".gz" if gz else ""
    for name, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y),
                      ("t10k-images-idx3-ubyte", xt), ("t10k-labels-idx1-ubyte", yt)):
        _write_idx(tmp_path / (name + suffix), arr, gz)
    d = load_mnist_idx(tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.y_test.tolist() == yt.tolist()
    # float32 scaling of uint8 pixels: equal up to float32 rounding (< 6e-8 over all 256 values)
    torch.testing.assert_close(d.x_train[3, 0], torch.from_numpy(x[3] / 255.0 * 2 - 1).float(), rtol=0, atol=1e-7)
    (tmp_path / ("t10k-labels-idx1-ubyte" + suffix)).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist_idx(tmp_path)


def _write_cifar(root, n=6, seed=0):
    """The CIFAR-10 python version: pickled dicts with bytes keys (as Python 2 wrote them)."""
    root.mkdir()
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        batches[name] = batch
    return batches


def test_cifar10_python_batches_and_grayscale(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_cifar10(tmp_path)
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32) / 255.0 * 2 - 1
    torch.testing.assert_close(d.x_train[0], torch.from_numpy(first).float(), rtol=0, atol=1e-7)  # float32 rounding
    assert d.y_test.tolist() == batches["test_batch"][b"labels"]
    gray = load_cifar10(tmp_path / "cifar-10-batches-py", grayscale=True)
    assert gray.x_train.shape == (30, 1, 32, 32) and gray.name == "cifar10-gray"


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_reader_refuses_pickled_code(tmp_path):
    _write_cifar(tmp_path / "c")
    with open(tmp_path / "c" / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*print"):
        load_cifar10(tmp_path / "c")


def test_image_folder_classes_and_split(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    d = load_image_folder(tmp_path, size=(8, 8))
    assert d.x_train.shape == (8, 1, 8, 8) and d.x_test.shape == (2, 1, 8, 8)
    assert sorted(d.y_test.tolist()) == [0, 1]
    images = load_images("folder", tmp_path, size=(6, 6))
    assert images.images.shape == (10, 1, 6, 6) and images.class_names == ("cat", "dog")
    assert 0 <= images.images.min() and images.images.max() <= 1


def test_file_sources_need_a_path_and_never_download():
    with pytest.raises(ZooError, match="--data-path"):
        load_data("cifar10")
    with pytest.raises(ZooError, match="unknown data source"):
        load_data("imagenet")


def test_digit_images_for_inrs():
    images = load_images("digits")
    assert images.images.shape == (1797, 1, 8, 8) and images.images.max() == 1.0
    assert images.take(5).labels.tolist() == [0, 1, 2, 3, 4]


def test_scikit_image_sources():
    pytest.importorskip("skimage")
    faces = load_images("lfw")
    assert faces.images.shape == (200, 1, 25, 25) and faces.labels.sum() == 100 and faces.class_names[1] == "face"
    photos = load_images("skimage", size=(16, 16))
    assert photos.images.shape[1:] == (1, 16, 16) and len(set(photos.labels.tolist())) == len(photos)
    assert 0 <= photos.images.min() and photos.images.max() <= 1
