"""Small network modules used by the symmetry catalogue (``catalogue.py``).

Each module is written the way its family is usually written in the wild (Hugging Face style attention,
torchvision style residual blocks, ConvNeXt channels-last blocks), so that the tracer sees the aten patterns
it will meet in real checkpoints. None of them holds test logic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Sine(nn.Module):
    """SIREN activation ``sin(omega * x)``."""

    def __init__(self, omega: float = 30.0) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * x)


def mlp(sizes: list[int], act: type[nn.Module] | list[nn.Module] = nn.ReLU, dropout: float = 0.0,
        bias: bool = True) -> nn.Sequential:
    """``Linear -> act (-> Dropout)`` stack; ``act`` is a class or one instance per hidden layer."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act[i] if isinstance(act, list) else act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- MLP variants
class HiddenOutputMLP(nn.Module):
    """MLP 8-16-16-3 that also returns its first hidden activation (which fixes that group)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc3(F.relu(self.fc2(h1))), h1


class TwoHeads(nn.Module):
    """Shared trunk with a classification and a regression head (two outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = mlp([6, 12, 10])
        self.head_a, self.head_b = nn.Linear(10, 3), nn.Linear(10, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.trunk(x))
        return self.head_a(h), self.head_b(h)


class TwoTowers(nn.Module):
    """Two inputs projected into one hidden space and added."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(6, 8)
        self.head = mlp([8, 8, 2])

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.head(F.relu(self.a(x1) + self.b(x2)))


class SharedRecurrent(nn.Module):
    """One Linear(10, 10) applied twice: its input and output spaces must be the same group."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.shared, self.out = nn.Linear(8, 10), nn.Linear(10, 10), nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.inp(x))
        for _ in range(2):
            h = torch.tanh(self.shared(h))
        return self.out(h)


class TiedAutoencoder(nn.Module):
    """Decoder reuses the encoder weight transposed (``F.linear(h, W.t())``)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 4)
        self.dec_bias = nn.Parameter(torch.randn(8) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.relu(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class SigmoidGate(nn.Module):
    """``h * sigmoid(W h)``: the gate's output group is unified with ``h``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.gate, self.out = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return self.out(F.relu(h * torch.sigmoid(self.gate(h))))


class SwiGLUResidual(nn.Module):
    """LLaMA-style residual MLP: RMSNorm, ``silu(gate(x)) * up(x)``, down projection added back."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 12)
        self.norm1, self.norm2 = nn.RMSNorm(12), nn.RMSNorm(12)
        self.gate, self.up, self.down = nn.Linear(12, 20), nn.Linear(12, 20), nn.Linear(20, 12)
        self.out = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        r = self.inp(x)
        h = self.norm1(r)
        r = r + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.out(self.norm2(r))


class ChunkGLU(nn.Module):
    """``a, b = Linear(x).chunk(2); a * sigmoid(b)`` (the GLU pattern written by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(8, 24), nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.fc(x).chunk(2, dim=-1)
        return self.out(a * torch.sigmoid(b))


class ConcatBranches(nn.Module):
    """Two parallel Linear branches concatenated along features."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(8, 6), nn.Linear(8, 10), nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], dim=-1))


class BufferScaledMLP(nn.Module):
    """Hidden features multiplied by a float buffer (``persistent`` decides whether it is state or "
    "constant)."""

    def __init__(self, persistent: bool) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 12), nn.Linear(12, 3)
        self.register_buffer("gain", torch.linspace(0.5, 1.5, 16), persistent=persistent)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.fc1(x)) * self.gain
        return self.fc3(F.relu(self.fc2(h)))


class PReLUScaleMLP(nn.Module):
    """Per-channel PReLU and a per-feature affine made of two Parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act = nn.Linear(6, 10), nn.PReLU(10)
        self.fc2, self.fc3 = nn.Linear(10, 8), nn.Linear(8, 3)
        self.scale = nn.Parameter(torch.rand(8) + 0.5)
        self.shift = nn.Parameter(torch.randn(8) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc2(self.act(self.fc1(x)))
        return self.fc3(torch.tanh(h * self.scale + self.shift))


class ConvScaleShared(nn.Module):
    """Per-channel scale Parameter, a shared (1-parameter) PReLU and a 0-d scalar Parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(6) + 0.5)
        self.act = nn.PReLU()
        self.alpha = nn.Parameter(torch.tensor(0.7))
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv1(x) * self.scale.view(1, -1, 1, 1)) * self.alpha
        h = F.relu(self.conv2(h)).mean(dim=(2, 3))  # (B, 4)
        return self.head(h)


class InputResidual(nn.Module):
    """``y = x + f(x)`` with the raw input: f's output group is fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.f = mlp([8, 16, 8])
        self.g = mlp([8, 16, 3])

    def forward(self, x: Tensor) -> Tensor:
        return self.g(x + self.f(x))


class ChannelsLastFlatten(nn.Module):
    """Conv features permuted to channels-last before flattening: the Linear input is ``P x C``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)
        self.head = mlp([4 * 4 * 5, 6, 4])

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x)).permute(0, 2, 3, 1)  # (B, 4, 4, 5)
        return self.head(h.flatten(1))


class EmbeddingBag(nn.Module):
    """Token embedding averaged over the sequence, then an MLP classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8, padding_idx=0)
        self.head = mlp([8, 6, 2])

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.emb(ids).mean(dim=1))


class LSTMClassifier(nn.Module):
    """Single-layer LSTM read at the last time step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)  # (B, T, 8)
        return self.head(out[:, -1])


# --------------------------------------------------------------------------- convolutional blocks
class BasicBlock(nn.Module):
    """torchvision-style ResNet basic block with an optional 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem, stage 1 (two identity blocks, 8 ch), stage 2 (projection block + identity block, 16 ch), head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.stage1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.stage2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stage2(self.stage1(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


class GroupNormResidual(nn.Module):
    """Residual stream of 8 channels normalized by GroupNorm(2, 8) in one block and GroupNorm(4, 8) in the "
    "next."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(g, 8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, padding=1))
            for g in (2, 4))
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        r = self.stem(x)
        for block in self.blocks:
            r = r + block(r)
        return self.head(r.mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    """DenseNet layer: ``cat([x, conv(relu(bn(x)))])``."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], dim=1)


class TinyDenseNet(nn.Module):
    """Stem (4) -> two dense layers (growth 3) -> transition 1x1 (6) -> BN-ReLU-pool head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.dense = nn.Sequential(DenseLayer(4, 3), DenseLayer(7, 3))
        self.transition = nn.Sequential(nn.BatchNorm2d(10), nn.ReLU(), nn.Conv2d(10, 6, 1), nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.transition(self.dense(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(F.relu(self.norm(h)), 1).flatten(1))


class TinyUNet(nn.Module):
    """Two-level U-Net; the decoder upsamples (bilinear or ConvTranspose2d) and concatenates the skip."""

    def __init__(self, transposed: bool) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 4, 3, padding=1)
        self.enc2 = nn.Conv2d(4, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2) if transposed else None
        self.dec = nn.Conv2d((4 if transposed else 8) + 4, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(F.max_pool2d(e1, 2)))
        if self.up is not None:
            u = self.up(e2)
        else:
            u = F.interpolate(e2, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(F.relu(self.dec(torch.cat([u, e1], dim=1))))


class SqueezeExcite(nn.Module):
    """Channel gating ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))  # (B, C)
        return x * s[:, :, None, None]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, channels-last LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + h.permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """Patchify stem (k=2, s=2), two ConvNeXt blocks, global mean, LayerNorm, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.blocks = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.norm, self.head = nn.LayerNorm(8), nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.blocks(self.stem(x)).mean(dim=(2, 3))))


from tests.graphs.catalogue_attention import (  # noqa: E402  (attention networks live beside this file)
    Block,
    GQAttention,
    MHAClassifier,
    SelfAttention,
    SequenceClassifier,
    SinusoidalEncoder,
    SplitQKVAttention,
    TinyLM,
    TinyViT,
)

__all__ = ["Block", "GQAttention", "MHAClassifier", "SelfAttention", "SequenceClassifier", "SinusoidalEncoder",
           "SplitQKVAttention", "TinyLM", "TinyViT"]

