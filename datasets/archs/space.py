"""The architecture space: :class:`ArchSpec`, one network's structure (built by :mod:`datasets.archs.build`).

Three families, each for 1-D signals (``input_shape = (C, L)``) and images (``(C, H, W)``):

* ``cell`` (DeepNets-1M / DARTS-like): a stem conv, stages of identical cells with a stride-2
  reduction block between stages, global average pooling and a linear classifier. A cell is a small
  DAG given by :attr:`ArchSpec.genotype`: node 0 is the cell input and node ``j >= 1`` applies one op
  of :data:`CELL_OPS` to the *sum* of its one or two input nodes. The cell output is the sum of its
  leaf nodes (``wiring="sum"``) or their concatenation followed by a 1x1 conv back to the width
  (``wiring="concat"``).
* ``mlp``: flatten, ``len(widths)`` hidden layers (linear, optional norm, activation), a linear head.
* ``vit``: a tiny pre-LN vision transformer: patch-embedding conv, learned position embedding,
  optional class token (else mean pooling), ``blocks`` attention + MLP blocks, final norm, linear head.

A spec is data only (JSON round trip through :meth:`ArchSpec.to_json` / :meth:`ArchSpec.from_json`);
:func:`build_module` turns it into an ``nn.Module`` with PyTorch's default initialization.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields

import torch

from datasets.errors import ZooError

__all__ = ["ACTIVATIONS", "CELL_OPS", "FAMILIES", "NORMS", "WIRINGS", "ArchSpec"]

FAMILIES = ("cell", "mlp", "vit")
"""Architecture families."""

CELL_OPS = ("conv3x3", "conv5x5", "sep_conv3x3", "dil_conv3x3", "max_pool3x3", "avg_pool3x3", "identity")
"""Ops of a cell node (``k x k`` means ``k`` taps per spatial axis, so ``k`` for 1-D signals)."""

PARAM_OPS = ("conv3x3", "conv5x5", "sep_conv3x3", "dil_conv3x3")
"""Cell ops with parameters (ReLU-conv-norm)."""

NORMS = {"cell": ("bn", "gn", "none"), "mlp": ("bn", "ln", "none"), "vit": ("ln", "none")}
"""Normalizations by family: BatchNorm, GroupNorm(1, C) (a LayerNorm over channels and positions),
LayerNorm, or none."""

ACTIVATIONS = ("relu", "gelu", "tanh")
"""Activations of MLP hidden layers and of transformer MLPs (cells always use ReLU)."""

WIRINGS = ("sum", "concat")
"""How a cell combines its leaf nodes."""

Genotype = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class ArchSpec:
    """The structure of one network (no weights).

    Attributes:
        family: One of :data:`FAMILIES`.
        input_shape: ``(C, L)`` for 1-D signals or ``(C, H, W)`` for images (no batch axis).
        num_classes: Output logits.
        widths: ``cell``: channels of each stage; ``mlp``: width of each hidden layer; ``vit``:
            ``(dim,)``, the token width.
        norm: One of :data:`NORMS` ``[family]``.
        activation: One of :data:`ACTIVATIONS` (``mlp`` and ``vit``; ``cell`` ops use ReLU).
        cells_per_stage: ``cell``: number of cells in each stage (same length as ``widths``).
        genotype: ``cell``: nodes ``(op, inputs)`` of the repeated cell; node ``j`` (1-based, node 0 is
            the cell input) reads the sum of ``inputs``, all ``< j``.
        wiring: ``cell``: ``"sum"`` or ``"concat"`` of the leaf nodes (nodes no other node reads).
        stem_kernel: ``cell``: kernel size of the stem conv (odd).
        patch: ``vit``: patch size (per spatial axis).
        heads: ``vit``: attention heads (divides ``widths[0]``).
        blocks: ``vit``: transformer blocks.
        mlp_ratio: ``vit``: hidden width of the block MLP over ``dim``.
        cls_token: ``vit``: classify from a learned class token (else from the mean token).
    """

    family: str
    input_shape: tuple[int, ...]
    num_classes: int
    widths: tuple[int, ...]
    norm: str = "none"
    activation: str = "relu"
    cells_per_stage: tuple[int, ...] = ()
    genotype: Genotype = ()
    wiring: str = "sum"
    stem_kernel: int = 3
    patch: int = 0
    heads: int = 0
    blocks: int = 0
    mlp_ratio: int = 2
    cls_token: bool = False

    def __post_init__(self) -> None:
        try:  # lists (from JSON or callers) become tuples, so that specs hash and compare by value
            for key in ("input_shape", "widths", "cells_per_stage"):
                object.__setattr__(self, key, tuple(int(v) for v in getattr(self, key)))
            object.__setattr__(self, "genotype", tuple((str(op), tuple(int(i) for i in inputs))
                                                       for op, inputs in self.genotype))
        except (TypeError, ValueError) as exc:
            raise ZooError(f"malformed ArchSpec field ({exc}); shapes and widths are integer sequences and "
                           "genotype nodes are (op, [input nodes]) pairs") from exc
        _check(self.family in FAMILIES, f"unknown family {self.family!r}; choose one of {FAMILIES}")
        _check(len(self.input_shape) in (2, 3) and all(int(s) > 0 for s in self.input_shape),
               f"input_shape must be (C, L) or (C, H, W) with positive sizes, got {self.input_shape}")
        _check(self.num_classes >= 2, f"num_classes must be at least 2, got {self.num_classes}")
        _check(len(self.widths) > 0 and all(w > 0 for w in self.widths), f"widths must be positive, got {self.widths}")
        _check(self.norm in NORMS[self.family], f"norm {self.norm!r} is not one of {NORMS[self.family]} "
               f"for family {self.family!r}")
        _check(self.activation in ACTIVATIONS, f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.family == "cell":
            self._check_cell()
        elif self.family == "vit":
            dim = self.widths[0]
            _check(len(self.widths) == 1, f"a vit has one width (its dim), got {self.widths}")
            _check(self.heads > 0 and dim % self.heads == 0, f"heads={self.heads} must divide dim={dim}")
            _check(self.blocks > 0 and self.mlp_ratio > 0, "a vit needs blocks > 0 and mlp_ratio > 0")
            _check(0 < self.patch <= min(self.input_shape[1:]), f"patch {self.patch} does not fit the input "
                   f"{self.input_shape}")

    def _check_cell(self) -> None:
        _check(len(self.cells_per_stage) == len(self.widths) and all(c > 0 for c in self.cells_per_stage),
               f"cells_per_stage {self.cells_per_stage} needs one positive count per stage width {self.widths}")
        _check(min(self.input_shape[1:]) >> (len(self.widths) - 1) >= 1,
               f"{len(self.widths) - 1} stride-2 reductions do not fit the input {self.input_shape}")
        _check(len(self.genotype) > 0, "a cell needs at least one node")
        for j, (op, inputs) in enumerate(self.genotype, start=1):
            _check(op in CELL_OPS, f"unknown cell op {op!r}; choose one of {CELL_OPS}")
            _check(0 < len(inputs) <= 2 and len(set(inputs)) == len(inputs) and all(0 <= i < j for i in inputs),
                   f"cell node {j} reads {inputs}; give one or two distinct earlier nodes (0 is the cell input)")
        _check(self.wiring in WIRINGS, f"wiring {self.wiring!r} is not one of {WIRINGS}")
        _check(self.stem_kernel % 2 == 1, f"stem_kernel must be odd, got {self.stem_kernel}")

    # ------------------------------------------------------------------ derived structure
    @property
    def depth(self) -> int:
        """Cells (``cell``), hidden layers (``mlp``) or transformer blocks (``vit``)."""
        if self.family == "cell":
            return sum(self.cells_per_stage)
        return len(self.widths) if self.family == "mlp" else self.blocks

    @property
    def max_width(self) -> int:
        """The widest stage, hidden layer or token width."""
        return max(self.widths)

    @property
    def num_nodes(self) -> int:
        """Nodes per cell, the input node excluded (0 for ``mlp`` and ``vit``)."""
        return len(self.genotype)

    @property
    def leaves(self) -> tuple[int, ...]:
        """Cell nodes that no other node reads: the cell output combines them."""
        used = {i for _, inputs in self.genotype for i in inputs}
        return tuple(j for j in range(1, len(self.genotype) + 1) if j not in used)

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """A zero batch ``[batch, *input_shape]`` for tracing and shape checks."""
        return torch.zeros(batch, *self.input_shape)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        """A JSON-serializable dict (tuples become lists)."""
        return _listify(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> ArchSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        _check(not extra, f"unknown ArchSpec fields {sorted(extra)}; known: {sorted(known)}")
        missing = {f.name for f in fields(cls) if f.default is MISSING} - set(d)
        _check(not missing, f"ArchSpec fields {sorted(missing)} are missing")
        return cls(**d)

    def to_json(self) -> str:
        """Canonical compact JSON (sorted keys): equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> ArchSpec:
        """Inverse of :meth:`to_json`."""
        try:
            d = json.loads(s)
        except json.JSONDecodeError as exc:
            raise ZooError(f"not an ArchSpec JSON string ({exc}); write specs with ArchSpec.to_json") from exc
        _check(isinstance(d, dict), "an ArchSpec JSON string must hold an object")
        return cls.from_dict(d)


def _listify(obj):
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_listify(v) for v in obj]
    return obj


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ZooError(message)
