"""The one place where builders and importers hand models to :class:`datasets.writer.ZooWriter`.

Builders and importers produce either state_dicts (written with ``ZooWriter.add``) or *stacked*
parameters: a mapping from state_dict key to a tensor ``[N, *shape]`` holding N models at once.
:func:`stacked_rows` turns the latter into the writer's ``[N, num_params]`` rows in layout order
with one copy per tensor, which is what makes importing 100,000s of models fast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from datasets.errors import ZooError
from datasets.hdf5 import ZooReader
from datasets.splits import DEFAULT_SPLIT, SplitSpec
from datasets.writer import ZooWriter
from graphs.errors import LayoutMismatchError

__all__ = ["num_threads", "open_writer", "resolve_device", "stacked_rows", "stored_sources"]


def stacked_rows(stacked: Mapping[str, torch.Tensor | np.ndarray], layout) -> np.ndarray:
    """``[N, layout.num_params]`` rows from stacked parameters ``{name: [N, *shape]}``.

    The rows have the layout's float dtype, or a wider one when a tensor is wider (the writer rounds
    those and says by how much).

    Raises:
        graphs.LayoutMismatchError: A layout tensor is missing, or its shape differs.
    """
    names = [p.name for p in layout.params]
    missing = [n for n in names if n not in stacked]
    extra = [k for k in stacked if k not in names and not any(k in p.aliases for p in layout.params)]
    if missing or extra:
        raise LayoutMismatchError(f"stacked parameters do not match layout {layout.name}#{layout.fingerprint}: "
                                  f"missing {missing[:5]}, unexpected {extra[:5]}")
    n = len(next(iter(stacked.values())))
    values = {p.name: stacked[p.name].detach().cpu().numpy() if isinstance(stacked[p.name], torch.Tensor)
              else np.asarray(stacked[p.name]) for p in layout.params}
    # wider float inputs stay wide: the writer rounds them to the layout's dtype and reports the error
    dtype = np.result_type(np.dtype(layout.float_dtype), *(v.dtype for v in values.values() if v.dtype.kind == "f"))
    out = np.empty((n, layout.num_params), dtype=dtype)
    for p in layout.params:
        value = values[p.name]
        if value.shape != (n, *p.shape):
            raise LayoutMismatchError(f"stacked {p.name!r} has shape {value.shape}, layout needs "
                                      f"{(n, *p.shape)}")
        out[:, p.offset:p.offset + p.numel] = value.reshape(n, -1)
    return out


def open_writer(out: str | os.PathLike, append: bool = False, allow_nonfinite: bool = False,
                split: SplitSpec | None = DEFAULT_SPLIT, label_kinds: Mapping[str, str] | None = None) -> ZooWriter:
    """A :class:`ZooWriter` for ``out`` (new, or appended to), writing ``split`` on close when none is stored."""
    return ZooWriter(out, mode="a" if append else "w", allow_nonfinite=allow_nonfinite, default_split=split,
                     label_kinds=label_kinds)


def stored_sources(out: str | os.PathLike) -> set[str]:
    """The ``source`` labels already in the zoo ``out`` (empty when it does not exist or has none).

    Importers appending to a zoo skip these, so that ``--append`` after an interrupted or repeated
    import adds only what is missing, as ``convert`` does.
    """
    if not os.path.exists(out):
        return set()
    with ZooReader(out) as r:
        return set(r.labels("source")) if "source" in r.label_names else set()


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n)`` (``None``: unchanged), restoring the old value.

    Tiny models train several times faster on one thread than on two, and much faster still when
    other processes compete for the cores (OpenMP threads then spin waiting for each other).
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ZooError(f"bad device {device!r}: use auto, cpu, cuda or cuda:N") from exc
