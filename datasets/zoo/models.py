"""Small model families that zoo builders train: MLP, Small-CNN-Zoo-style CNN, residual CNN, SIREN.

There is no torchvision here, so every family is a few lines of plain ``torch.nn``. A family is picked
by :class:`ModelSpec` (a frozen dataclass, so it can be a label and a cache key) and built by
:func:`build_model`. Weight initialization is a separate step, :func:`init_weights`, so a recipe can
sample it as a hyperparameter.

:class:`Siren` follows the DWSNets/NFN INR convention exactly (state_dict keys ``seq.{i}.weight``,
sine layers with ``w0 = 30``, a linear last layer and an output offset of ``+0.5``), so SIRENs fitted
here and SIRENs imported from those zoos share one layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "INITS", "MLP", "ModelSpec", "ResidualCNN", "Siren", "SineLinear", "SmallCNN",
           "build_model", "init_weights"]

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "selu": F.selu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "silu": F.silu,
}
INITS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "normal",
         "truncated_normal", "orthogonal")


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one classifier.

    Attributes:
        family: ``"mlp"``, ``"cnn"`` (Small CNN Zoo style) or ``"resnet"`` (residual CNN).
        in_channels: Input channels (1 for grayscale; ignored by ``mlp`` beyond the input size).
        in_size: Spatial input size: ``(H, W)`` for images, ``(L,)`` for 1-d signals.
        num_classes: Output units.
        width: Hidden units (mlp) or channels (cnn, resnet).
        depth: Hidden layers (mlp), conv layers (cnn) or residual blocks (resnet).
        activation: A key of :data:`ACTIVATIONS`.
        dropout: Dropout rate after each hidden activation (0 disables it; no module is created).
        stride: Conv stride (cnn only).
        padding: Conv padding (cnn only; the Small CNN Zoo uses 0, 8x8 digits need 1).
        norm: BatchNorm in residual blocks (resnet only).
    """

    family: str
    in_channels: int
    in_size: tuple[int, ...]
    num_classes: int
    width: int = 16
    depth: int = 3
    activation: str = "relu"
    dropout: float = 0.0
    stride: int = 2
    padding: int = 1
    norm: bool = True

    @property
    def example_input(self) -> torch.Tensor:
        """A zero batch of one input, for tracing."""
        return torch.zeros(1, self.in_channels, *self.in_size)


class MLP(nn.Module):
    """Fully connected classifier: flatten, ``depth`` x (linear, activation, dropout), linear."""

    def __init__(self, in_features: int, num_classes: int, width: int = 32, depth: int = 2,
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.act = _activation(activation)
        dims = [in_features] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, ...]`` -> logits ``[B, num_classes]``."""
        x = x.flatten(1)
        for layer in self.layers:
            x = self.drop(self.act(layer(x)))
        return self.head(x)


class SmallCNN(nn.Module):
    """The Small CNN Zoo architecture, generalized: ``depth`` strided 3x3 convs, global average pool, linear.

    With ``width=16, depth=3, stride=2, padding=0`` on 1-channel input this is exactly the network of
    Unterthiner et al. (2020), 4,970 parameters. ``len(in_size) == 1`` builds the 1-d variant.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 3,
                 activation: str = "relu", dropout: float = 0.0, stride: int = 2, padding: int = 0,
                 ndim: int = 2) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[ndim]
        self.act = _activation(activation)
        chans = [in_channels] + [width] * depth
        self.convs = nn.ModuleList(conv(a, b, 3, stride=stride, padding=padding)
                                   for a, b in pairwise(chans))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, *spatial]`` -> logits ``[B, num_classes]``."""
        for conv in self.convs:
            x = self.drop(self.act(conv(x)))
        return self.head(x.flatten(2).mean(-1))  # global average pool: [B, width]


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, activation: str, norm: bool, dropout: float) -> None:
        super().__init__()
        self.act = _activation(activation)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=not norm)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=not norm)
        self.norm1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.norm1(self.conv1(x))))
        return self.act(x + self.norm2(self.conv2(h)))  # the skip ties input and output channels


class ResidualCNN(nn.Module):
    """ResNet-style classifier: 3x3 stem conv, ``depth`` residual blocks of two 3x3 convs, pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 2,
                 activation: str = "relu", dropout: float = 0.0, norm: bool = True) -> None:
        super().__init__()
        self.act = _activation(activation)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(_ResidualBlock(width, activation, norm, dropout) for _ in range(depth))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` -> logits ``[B, num_classes]``."""
        x = self.act(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean((2, 3)))


def build_model(spec: ModelSpec) -> nn.Module:
    """Construct the (PyTorch-default initialized) module that ``spec`` describes."""
    if spec.family == "mlp":
        return MLP(spec.in_channels * math.prod(spec.in_size), spec.num_classes, spec.width, spec.depth,
                   spec.activation, spec.dropout)
    if spec.family == "cnn":
        return SmallCNN(spec.in_channels, spec.num_classes, spec.width, spec.depth, spec.activation,
                        spec.dropout, spec.stride, spec.padding, ndim=len(spec.in_size))
    if spec.family == "resnet":
        if len(spec.in_size) != 2:
            raise ValueError(f"family 'resnet' needs 2-d inputs, got in_size={spec.in_size}; use 'cnn' or "
                             "'mlp' for 1-d signals")
        return ResidualCNN(spec.in_channels, spec.num_classes, spec.width, spec.depth, spec.activation,
                           spec.dropout, spec.norm)
    raise ValueError(f"unknown model family {spec.family!r}; choose 'mlp', 'cnn' or 'resnet'")


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default", std: float = 0.05) -> nn.Module:
    """Re-initialize every conv/linear weight of ``model`` in place (biases are zeroed unless ``default``).

    Uses the global torch RNG: seed it (or fork it) first for reproducible weights.

    Args:
        model: The network.
        scheme: One of :data:`INITS`; ``default`` keeps PyTorch's initialization.
        std: Standard deviation for ``normal`` and ``truncated_normal``.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {INITS}")
    if scheme == "default":
        return model
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        w = m.weight
        if scheme == "kaiming_normal":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity="relu")
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w)
        elif scheme == "normal":
            nn.init.normal_(w, std=std)
        elif scheme == "truncated_normal":
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w)
        if m.bias is not None:
            m.bias.zero_()
    return model


class SineLinear(nn.Module):
    """``sin(w0 * (x W^T + b))`` with SIREN initialization (Sitzmann et al., 2020), DWSNets parameter names."""

    def __init__(self, in_features: int, out_features: int, w0: float = 30.0, is_first: bool = False) -> None:
        super().__init__()
        self.w0 = w0
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / w0
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in]`` -> ``[..., out]``."""
        return torch.sin(self.w0 * F.linear(x, self.weight, self.bias))


class Siren(nn.Module):
    """SIREN image INR as in DWSNets/NFN: coordinates ``[..., 2]`` -> values ``[..., out]``, plus 0.5.

    Args:
        in_features: Coordinate dimension (2 for images).
        hidden: Hidden width.
        depth: Number of linear layers in total (``depth - 1`` sine layers, then one linear layer).
        out_features: Channels (1 grayscale, 3 RGB).
        w0: Sine frequency factor.
        offset: Constant added to the output (DWSNets: 0.5, so zero weights predict mid-gray).
    """

    def __init__(self, in_features: int = 2, hidden: int = 32, depth: int = 3, out_features: int = 1,
                 w0: float = 30.0, offset: float = 0.5) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"a Siren needs depth >= 2 (one sine layer and the linear output), got {depth}")
        layers: list[nn.Module] = [SineLinear(in_features, hidden, w0, is_first=True)]
        layers += [SineLinear(hidden, hidden, w0) for _ in range(depth - 2)]
        layers.append(nn.Linear(hidden, out_features))
        self.seq = nn.Sequential(*layers)
        self.offset = offset

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords [..., in_features]`` -> ``[..., out_features]``."""
        return self.seq(coords) + self.offset
