"""Row transforms: functions of one model's flat parameter vector, applied before its graph is built.

A row transform is any callable ``(vec: Tensor [num_params], layout: graphs.Layout) -> Tensor
[num_params]``. Working on the flat vector keeps each transform one gather or one affine map, and
:class:`datasets.ZooDataset` builds the graph of the result with one more gather. Randomness comes
from the ``generator`` given, else from torch's global RNG (which DataLoader seeds per worker), so
``ZooDataset.__getitem__`` stays a pure function of the index when no random transform is used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

import graphs
from datasets.hdf5 import STAT_KINDS, ZooReader
from datasets.stats import read_stats
from graphs.align import weight_matching

__all__ = ["Canonicalize", "Compose", "InputWarp", "Normalize", "RandomSymmetry", "RowTransform"]

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


class InputWarp:
    r"""Warp a coordinate network's input by a random affine map: the network then draws ``f(A x + t)``.

    For an INR, ``f(A x + t)`` is its image slightly rotated, scaled, sheared and shifted: a new training
    example with the same class, written exactly in weight space. Every layer that reads the network input
    directly (weight ``W`` with an axis on the input group, bias ``b`` of the same module) becomes
    ``W A`` and ``b + W t``. ``A = I + strength * G`` and ``t = strength * g`` with standard normal ``G``
    and ``g``; ``strength = 0`` is the identity. The map acts on the input group, not on any neuron group,
    so it commutes with neuron permutations.

    Args:
        strength: Size of the random distortion (e.g. 0.1).
        generator: Source of randomness (default: torch's global RNG).

    Raises:
        ValueError: (on call, or from :meth:`check`) the layout has no linear layer on a single input group
            of 1 to 3 coordinates.
    """

    def __init__(self, strength: float, generator: torch.Generator | None = None) -> None:
        if strength < 0:
            raise ValueError(f"InputWarp(strength={strength}): give 0 (no warp) or a positive size")
        self.strength, self.generator = float(strength), generator
        self._plans: dict[str, list[tuple[graphs.layout.ParamSpec, graphs.layout.ParamSpec | None]]] = {}

    def check(self, layout: graphs.Layout) -> None:
        """Raise ``ValueError`` (naming the layout) unless the warp applies to ``layout``."""
        self._plan(layout)

    def _plan(self, layout: graphs.Layout):
        plan = self._plans.get(layout.fingerprint)
        if plan is not None:
            return plan
        inputs = [g.id for g in layout.groups if g.fixed and "input" in g.kinds]
        by_name = {p.name: p for p in layout.params}
        plan = []
        for p in layout.params:
            if len(p.shape) == 2 and len(inputs) == 1 and p.axes[1] == ("a", inputs[0]) and p.shape[1] <= 3:
                bias = by_name.get(p.name.rsplit(".", 1)[0] + ".bias") if "." in p.name else None
                plan.append((p, bias if bias is not None and bias.axes == (p.axes[0],) else None))
        if not plan:
            raise ValueError(f"InputWarp: layout {layout.fingerprint} has no linear layer reading a coordinate input "
                             "(1 to 3 numbers); the warp applies to coordinate networks such as INRs only")
        self._plans[layout.fingerprint] = plan
        return plan

    def __call__(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """``vec`` with its input warped by a fresh random affine map."""
        plan = self._plan(layout)
        d = plan[0][0].shape[1]
        noise = torch.randn(d * d + d, generator=self.generator, dtype=torch.float64)
        a = torch.eye(d, dtype=torch.float64) + self.strength * noise[:d * d].reshape(d, d)
        t = self.strength * noise[d * d:]
        out = vec.clone()
        for w_spec, b_spec in plan:
            w = vec[w_spec.offset:w_spec.offset + w_spec.numel].double().reshape(w_spec.shape)
            out[w_spec.offset:w_spec.offset + w_spec.numel] = (w @ a).reshape(-1).to(vec.dtype)
            if b_spec is not None:
                b = vec[b_spec.offset:b_spec.offset + b_spec.numel].double()
                out[b_spec.offset:b_spec.offset + b_spec.numel] = (b + w @ t).to(vec.dtype)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strength})"


class Canonicalize:
    """Align each model to a reference of its architecture by weight matching (a canonical orbit member).

    The result computes exactly the model's function; models that differ only by a neuron permutation
    become (up to ties) the same vector, which is what position-bound models such as a flat MLP need and
    what random-symmetry augmentation approximates by sampling. Each distinct row (keyed by a digest of its
    bytes) is aligned once per process and its symmetry kept (:meth:`warm` fills the cache before DataLoader
    workers fork).

    Args:
        references: ``{fingerprint: [num_params] tensor}``, e.g. from :meth:`from_dataset`.
        normalize: Per-tensor cosine weight matching (see :func:`graphs.align`).
        seed: Seed of the group order.
    """

    def __init__(self, references: Mapping[str, torch.Tensor], normalize: bool = False, seed: int = 0) -> None:
        self.references = {fp: torch.as_tensor(v).detach().cpu() for fp, v in references.items()}
        self.normalize, self.seed = normalize, seed
        self._ref_sd: dict[str, dict] = {}
        self._cache: dict[bytes, dict[int, torch.Tensor]] = {}  # row digest -> its aligning symmetry

    @classmethod
    def from_dataset(cls, dataset, refine: int = 20, sample: int = 256, normalize: bool = False,
                     seed: int = 0) -> Canonicalize:
        """References from a dataset (normally the training split).

        Per architecture: the first ``sample`` models, refined at most ``refine`` times
        (:func:`graphs.canonical_reference`). The dataset's own transform is not applied.
        """
        by_fp: dict[str, list[int]] = {}
        for i in range(len(dataset)):
            fp = dataset.fingerprints[dataset._arch[i]]
            if len(by_fp.setdefault(fp, [])) < sample:
                by_fp[fp].append(int(dataset._row[i]))
        params, _ = dataset._open()
        refs = {}
        for fp, rows in by_fp.items():
            layout = dataset.layouts[fp]
            sds = [graphs.unflatten_state_dict(torch.from_numpy(params[fp][r]), layout) for r in rows]
            ref = graphs.canonical_reference(sds, layout, refine=refine, seed=seed, normalize=normalize)
            refs[fp] = graphs.flatten_state_dict(ref, layout, check=False)
        return cls(refs, normalize=normalize, seed=seed)

    def __call__(self, vec: torch.Tensor, layout: graphs.Layout) -> torch.Tensor:
        """``vec`` aligned to the reference of its architecture."""
        fp = layout.fingerprint
        if fp not in self.references:
            raise ValueError(f"no canonical reference for architecture {layout.name}#{fp}: the references were "
                             "computed on other architectures; compute them on a split holding it")
        key = fp.encode() + hashlib.blake2b(np.ascontiguousarray(vec.detach().cpu().numpy()).tobytes(),
                                            digest_size=16).digest()
        if key not in self._cache:
            if fp not in self._ref_sd:
                self._ref_sd[fp] = graphs.unflatten_state_dict(self.references[fp].to(vec.dtype), layout)
            sd = graphs.unflatten_state_dict(vec.detach().cpu(), layout)
            self._cache[key] = weight_matching(self._ref_sd[fp], sd, layout, seed=self.seed,
                                               normalize=self.normalize, orbit_invariant=True)
        return vec[graphs.symmetry_index(layout, self._cache[key]).to(vec.device)]

    def warm(self, dataset, desc: str = "canonicalize") -> None:
        """Align every row of ``dataset`` now (fills the cache; a progress bar on stderr)."""
        params, _ = dataset._open()
        for i in tqdm(range(len(dataset)), desc=desc, unit="model", leave=False, disable=None):
            fp = dataset.fingerprints[dataset._arch[i]]
            self(torch.from_numpy(params[fp][int(dataset._row[i])]), dataset.layouts[fp])

    def state(self) -> dict:
        """What :meth:`from_state` needs (tensors and plain values: checkpoint-safe)."""
        return {"references": dict(self.references), "normalize": self.normalize, "seed": self.seed}

    @classmethod
    def from_state(cls, state: Mapping) -> Canonicalize:
        """Inverse of :meth:`state`."""
        return cls(state["references"], normalize=bool(state["normalize"]), seed=int(state["seed"]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.references)} architectures)"


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
