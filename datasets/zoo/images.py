"""Images to fit INRs to, each with a class label; every source is offline.

* ``digits``: scikit-learn's 1,797 8x8 digits (label: the digit);
* ``digits16``, ``digits28``: the same digits upsampled (bilinear) to 16x16 or 28x28 (MNIST's size);
* ``lfw``: scikit-image ``lfw_subset()`` 200 25x25 crops (label: 1 face, 0 not a face);
* ``skimage``: scikit-image sample photos, grayscale, resized (label: the photo's index);
* ``folder``: ``ROOT/<class>/*.png|jpg`` (label: the class folder, in sorted order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from datasets.errors import ZooError
from datasets.zoo.data import list_class_folders, read_image

__all__ = ["IMAGE_SOURCES", "ImageSet", "SKIMAGE_SAMPLES", "load_images"]

SKIMAGE_SAMPLES = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "horse", "rocket", "page",
                   "text", "clock", "grass", "gravel", "brick", "colorwheel", "immunohistochemistry")
IMAGE_SOURCES = ("digits", "digits16", "digits28", "lfw", "skimage", "folder")


@dataclass
class ImageSet:
    """Images with class labels.

    Attributes:
        name: Source name.
        images: ``[N, C, H, W]`` float32 in ``[0, 1]``.
        labels: ``[N]`` int64.
        class_names: Name of each class id.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, n: int | None) -> ImageSet:
        """The first ``n`` images (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return ImageSet(self.name, self.images[:n], self.labels[:n], self.class_names)


def _skimage():
    try:
        import skimage.data
        import skimage.transform
    except ImportError as exc:
        raise ZooError("this image source needs scikit-image: pip install -c constraints.txt "
                          "scikit-image") from exc
    return skimage


def _digits() -> ImageSet:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ZooError("the 'digits' images need scikit-learn: pip install -c constraints.txt "
                          "'weightgraph[data]'") from exc
    d = load_digits()
    images = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    return ImageSet("digits", images, torch.from_numpy(d.target.astype(np.int64)),
                    tuple(str(i) for i in range(10)))


def _digits_upsampled(side: int) -> ImageSet:
    """The digits upsampled (bilinear) to ``side x side``, where fits differ more between images.

    At 28x28 a SIREN of 1,185 parameters fits 784 pixels, as on MNIST.
    """
    d = _digits()
    images = torch.nn.functional.interpolate(d.images, size=(side, side), mode="bilinear", align_corners=False)
    return ImageSet(f"digits{side}", images.clamp(0, 1), d.labels, d.class_names)


def _lfw() -> ImageSet:
    faces = _skimage().data.lfw_subset()  # [200, 25, 25] in [0, 1]: 100 faces, then 100 non-faces
    labels = np.r_[np.ones(100), np.zeros(len(faces) - 100)].astype(np.int64)
    return ImageSet("lfw", torch.from_numpy(faces.astype(np.float32))[:, None], torch.from_numpy(labels),
                    ("not_face", "face"))


def _skimage_samples(size: tuple[int, int]) -> ImageSet:
    sk = _skimage()
    out = []
    for name in SKIMAGE_SAMPLES:
        im = np.asarray(getattr(sk.data, name)(), dtype=np.float32)
        if im.ndim == 3:  # RGB(A): luminance of the RGB channels
            im = im[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        im = im / max(float(im.max()), 1e-8)
        out.append(sk.transform.resize(im, size, anti_aliasing=True).astype(np.float32))
    return ImageSet("skimage", torch.from_numpy(np.stack(out))[:, None],
                    torch.arange(len(out), dtype=torch.int64), SKIMAGE_SAMPLES)


def _folder(path: str | os.PathLike, size: tuple[int, int], channels: int) -> ImageSet:
    images, labels, names = [], [], []
    for label, (name, paths) in enumerate(list_class_folders(path)):
        images += [read_image(p, size, channels) for p in paths]
        labels += [label] * len(paths)
        names.append(name)
    return ImageSet(f"folder:{os.path.basename(os.path.normpath(path))}", torch.from_numpy(np.stack(images)),
                    torch.tensor(labels, dtype=torch.int64), tuple(names))


def load_images(source: str, path: str | os.PathLike | None = None, size: tuple[int, int] = (32, 32),
                channels: int = 1) -> ImageSet:
    """Load an INR image source by name.

    Args:
        source: One of :data:`IMAGE_SOURCES`.
        path: Folder for ``folder``.
        size: Resize target for ``skimage`` and ``folder`` (``digits`` stay 8x8, ``lfw`` 25x25).
        channels: 1 (grayscale) or 3 (RGB) for ``folder``.
    """
    if source == "digits":
        return _digits()
    if source in ("digits16", "digits28"):
        return _digits_upsampled(int(source[6:]))
    if source == "lfw":
        return _lfw()
    if source == "skimage":
        return _skimage_samples(size)
    if source == "folder":
        if path is None:
            raise ZooError("image source 'folder' needs --data-path ROOT with ROOT/<class>/*.png")
        return _folder(path, size, channels)
    raise ZooError(f"unknown image source {source!r}; choose one of {IMAGE_SOURCES}")
