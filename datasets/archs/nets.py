"""The ``mlp`` and ``vit`` families of the architecture space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from datasets.archs.space import ArchSpec

__all__ = ["Attention", "MLPNet", "TinyViT", "TransformerBlock", "activation_layer"]


def activation_layer(name: str) -> nn.Module:
    """``relu``, ``gelu`` or ``tanh`` as a module."""
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


def _token_norm(norm: str, dim: int) -> nn.Module:
    return nn.LayerNorm(dim) if norm == "ln" else nn.Identity()


class MLPNet(nn.Sequential):
    """Flatten, then ``linear -> norm -> activation`` per hidden width, then a linear classifier.

    Args:
        spec: An ``mlp`` :class:`~datasets.archs.space.ArchSpec` (``norm``: ``bn``, ``ln`` or ``none``).

    Shapes:
        - input: ``[B, *spec.input_shape]``
        - output: ``[B, spec.num_classes]``
    """

    def __init__(self, spec: ArchSpec) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        d = math.prod(spec.input_shape)
        for w in spec.widths:
            layers.append(nn.Linear(d, w, bias=spec.norm != "bn"))
            if spec.norm == "bn":
                layers.append(nn.BatchNorm1d(w))
            elif spec.norm == "ln":
                layers.append(nn.LayerNorm(w))
            layers.append(activation_layer(spec.activation))
            d = w
        layers.append(nn.Linear(d, spec.num_classes))
        super().__init__(*layers)


class Attention(nn.Module):
    r"""Multi-head self-attention with separate q/k/v projections.

    .. math:: \mathrm{softmax}\big(QK^\top / \sqrt{d_h}\big) V \text{ per head, then } W_o

    Args:
        dim: Token width ``D``.
        heads: Heads ``h`` (``D / h`` channels each).

    Shapes:
        - input: ``[B, N, D]``
        - output: ``[B, N, D]``
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731  [B, h, N, D/h]
        o = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(o.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Args:
        dim: Token width ``D``.
        heads: Attention heads.
        mlp_ratio: MLP hidden width over ``D``.
        activation: MLP activation name.
        norm: ``ln`` or ``none``.

    Shapes:
        - input: ``[B, N, D]``
        - output: ``[B, N, D]``
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int, activation: str, norm: str) -> None:
        super().__init__()
        self.norm1, self.attn = _token_norm(norm, dim), Attention(dim, heads)
        self.norm2 = _token_norm(norm, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), activation_layer(activation),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch-embedding conv, position embedding, optional class token, transformer blocks, linear head.

    The patch conv (kernel = stride = ``patch``) turns ``[B, C, *spatial]`` into ``N`` tokens; the
    class token, when present, is prepended and read out, otherwise tokens are averaged.

    Args:
        spec: A ``vit`` :class:`~datasets.archs.space.ArchSpec` (``dim = spec.widths[0]``).

    Shapes:
        - input: ``[B, *spec.input_shape]``
        - output: ``[B, spec.num_classes]``
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        nd, dim = len(spec.input_shape) - 1, spec.widths[0]
        tokens = math.prod(s // spec.patch for s in spec.input_shape[1:])
        conv = nn.Conv1d if nd == 1 else nn.Conv2d
        self.embed = conv(spec.input_shape[0], dim, spec.patch, stride=spec.patch)  # non-overlapping patches
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if spec.cls_token else None
        self.pos = nn.Parameter(torch.zeros(1, tokens + int(spec.cls_token), dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, spec.heads, spec.mlp_ratio, spec.activation, spec.norm)
                                      for _ in range(spec.blocks)))
        self.norm = _token_norm(spec.norm, dim)
        self.head = nn.Linear(dim, spec.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Position embedding and class token ~ N(0, 0.02^2) (ViT's init; other layers keep PyTorch's)."""
        nn.init.normal_(self.pos, std=0.02)
        if self.cls is not None:
            nn.init.normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)  # [B, 1 + N, D]
        h = self.norm(self.blocks(h + self.pos))
        return self.head(h[:, 0] if self.cls is not None else h.mean(1))
