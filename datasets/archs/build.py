"""Build the ``nn.Module`` of an :class:`~datasets.archs.space.ArchSpec`."""

from __future__ import annotations

from torch import nn

from datasets.archs.cells import CellNet
from datasets.archs.nets import MLPNet, TinyViT
from datasets.archs.space import ArchSpec

__all__ = ["build_module"]


def build_module(spec: ArchSpec) -> nn.Module:
    """Build the network of ``spec`` (deterministic structure, PyTorch's default initialization).

    Args:
        spec: The architecture.

    Returns:
        An ``nn.Module`` mapping ``[B, *spec.input_shape]`` to logits ``[B, spec.num_classes]``.
    """
    return {"cell": CellNet, "mlp": MLPNet, "vit": TinyViT}[spec.family](spec)
