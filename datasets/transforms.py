"""Row transforms: functions of one model's flat parameter vector, applied before its graph is built.

A row transform is any callable ``(vec: Tensor [num_params], layout: graphs.Layout) -> Tensor
[num_params]``. Working on the flat vector keeps each transform one gather or one affine map, and
:class:`datasets.ZooDataset` builds the graph of the result with one more gather. Randomness comes
from the ``generator`` given, else from torch's global RNG (which DataLoader seeds per worker), so
``ZooDataset.__getitem__`` stays a pure function of the index when no random transform is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import torch

import graphs
from datasets.hdf5 import STAT_KINDS, ZooReader
from datasets.stats import read_stats

__all__ = ["Compose", "Normalize", "RandomSymmetry", "RowTransform"]

RowTransform = Callable[[torch.Tensor, "graphs.Layout"], torch.Tensor]


class RandomSymmetry:
    """Apply a uniformly random neuron permutation (a symmetry: the network's function is unchanged).

    Args:
        generator: Source of randomness (default: torch's global RNG).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """``vec`` with a random symmetry of ``layout`` applied."""
        perm = graphs.random_symmetry(layout, self.generator)
        return vec[graphs.symmetry_index(layout, perm).to(vec.device)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normalize:
    """``(vec - mean) / std`` with per-architecture statistics; :meth:`inverse` undoes it.

    Args:
        mean: ``{fingerprint: [num_params] tensor}``.
        std: ``{fingerprint: [num_params] tensor}`` (no zeros).
    """

    def __init__(self, mean: Mapping[str, torch.Tensor], std: Mapping[str, torch.Tensor]) -> None:
        self.mean, self.std = dict(mean), dict(std)

    @classmethod
    def from_zoo(cls, path: str | os.PathLike, kind: str = "orbit") -> Normalize:
        """Use the statistics stored in a zoo (``python -m datasets stats ZOO``).

        Args:
            path: The zoo file.
            kind: ``orbit`` (default: per symmetry orbit, keeps symmetries exact), ``tensor`` (per
                parameter tensor, keeps them too) or ``element`` (per entry; breaks them).
        """
        if kind not in STAT_KINDS:
            raise ValueError(f"kind must be one of {STAT_KINDS}, got {kind!r}")
        with ZooReader(path) as reader:
            stats = [read_stats(reader, fp) for fp in reader.fingerprints]
        return cls({s.fingerprint: torch.from_numpy(s.mean[kind]) for s in stats},
                   {s.fingerprint: torch.from_numpy(s.std[kind]) for s in stats})

    def _stats(self, vec: torch.Tensor, layout: graphs.Layout) -> tuple[torch.Tensor, torch.Tensor]:
        fp = layout.fingerprint
        if fp not in self.mean:
            raise KeyError(f"no normalization statistics for architecture {layout.name}#{fp}; compute them "
                           "with `python -m datasets stats ZOO` over a split holding it")
        return self.mean[fp].to(vec), self.std[fp].to(vec)

    def __call__(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """Normalize ``vec`` with the statistics of its architecture."""
        mean, std = self._stats(vec, layout)
        return (vec - mean) / std

    def inverse(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """Map a normalized vector (e.g. a generated network) back to parameter space."""
        mean, std = self._stats(vec, layout)
        return vec * std + mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.mean)} architectures)"


class Compose:
    """Apply row transforms in order.

    Args:
        transforms: Row transforms, first applied first.
    """

    def __init__(self, transforms: Sequence[RowTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """Apply every transform in turn."""
        for t in self.transforms:
            vec = t(vec, layout)
        return vec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"
