"""The ``cell`` family: DARTS-style ops, a cell DAG, and the stem-stages-classifier network.

Layer classes are picked by the number of spatial axes (``Conv1d``/``BatchNorm1d``/``MaxPool1d`` for
signals ``[B, C, L]``, the 2-d ones for images ``[B, C, H, W]``), so one spec builds either.
"""

from __future__ import annotations

import torch
from torch import nn

from datasets.archs.space import ArchSpec

__all__ = ["Cell", "CellNet", "conv_layer", "make_op", "norm_layer"]


def conv_layer(nd: int, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
               groups: int = 1, bias: bool = False) -> nn.Module:
    """A ``Conv1d``/``Conv2d`` (``nd`` spatial axes) with "same" padding for stride 1."""
    conv = nn.Conv1d if nd == 1 else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                groups=groups, bias=bias)


def norm_layer(norm: str, channels: int, nd: int) -> nn.Module:
    """``bn`` (BatchNorm over ``nd`` spatial axes), ``gn`` (GroupNorm(1, C)) or ``none`` (identity)."""
    if norm == "bn":
        return (nn.BatchNorm1d if nd == 1 else nn.BatchNorm2d)(channels)
    if norm == "gn":
        return nn.GroupNorm(1, channels)
    assert norm == "none", norm
    return nn.Identity()


class ConvOp(nn.Sequential):
    """ReLU, conv (optionally depthwise-separable and/or dilated), norm; ``C -> C`` channels, same size.

    Args:
        channels: Input and output channels ``C``.
        kernel: Taps per spatial axis.
        norm: ``bn``, ``gn`` or ``none`` (convs get a bias only without a norm).
        nd: Spatial axes (1 or 2).
        separable: Depthwise ``kernel`` conv then pointwise 1x1 conv.
        dilation: Dilation of the (depthwise) conv.
    """

    def __init__(self, channels: int, kernel: int, norm: str, nd: int, separable: bool = False,
                 dilation: int = 1) -> None:
        bias = norm == "none"
        if separable:
            convs = [conv_layer(nd, channels, channels, kernel, dilation=dilation, groups=channels),
                     conv_layer(nd, channels, channels, 1, bias=bias)]
        else:
            convs = [conv_layer(nd, channels, channels, kernel, dilation=dilation, bias=bias)]
        super().__init__(nn.ReLU(), *convs, norm_layer(norm, channels, nd))


def make_op(op: str, channels: int, norm: str, nd: int) -> nn.Module:
    """The module of one cell op (see :data:`datasets.archs.space.CELL_OPS`)."""
    if op == "conv3x3":
        return ConvOp(channels, 3, norm, nd)
    if op == "conv5x5":
        return ConvOp(channels, 5, norm, nd)
    if op == "sep_conv3x3":
        return ConvOp(channels, 3, norm, nd, separable=True)
    if op == "dil_conv3x3":
        return ConvOp(channels, 3, norm, nd, separable=True, dilation=2)
    if op == "max_pool3x3":
        return (nn.MaxPool1d if nd == 1 else nn.MaxPool2d)(3, stride=1, padding=1)
    if op == "avg_pool3x3":
        return (nn.AvgPool1d if nd == 1 else nn.AvgPool2d)(3, stride=1, padding=1, count_include_pad=False)
    if op == "identity":
        return nn.Identity()
    raise ValueError(f"unknown cell op {op!r}")


class Cell(nn.Module):
    r"""A cell: a DAG of ops on ``C`` channels that keeps the spatial size.

    .. math::
        h_0 = x, \qquad h_j = \mathrm{op}_j\Big(\sum_{i \in \mathrm{in}(j)} h_i\Big), \qquad
        y = \sum_{j \in \mathrm{leaves}} h_j \ \text{(sum)} \quad\text{or}\quad
        y = \mathrm{norm}(W_{1\times 1} [h_j]_{j \in \mathrm{leaves}}) \ \text{(concat)}

    Args:
        spec: The architecture (its ``genotype``, ``wiring`` and ``norm``).
        channels: ``C``.

    Shapes:
        - input: ``[B, C, *spatial]``
        - output: ``[B, C, *spatial]``
    """

    def __init__(self, spec: ArchSpec, channels: int) -> None:
        super().__init__()
        nd = len(spec.input_shape) - 1
        self.inputs = [tuple(inputs) for _, inputs in spec.genotype]
        self.leaves = spec.leaves
        self.ops = nn.ModuleList(make_op(op, channels, spec.norm, nd) for op, _ in spec.genotype)
        self.combine = None
        if spec.wiring == "concat":
            self.combine = nn.Sequential(conv_layer(nd, len(self.leaves) * channels, channels, 1,
                                                    bias=spec.norm == "none"),
                                         norm_layer(spec.norm, channels, nd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for op, inputs in zip(self.ops, self.inputs, strict=True):
            h = states[inputs[0]]
            for i in inputs[1:]:
                h = h + states[i]  # residual wiring: several inputs are summed
            states.append(op(h))
        outs = [states[j] for j in self.leaves]
        if self.combine is not None:
            return self.combine(torch.cat(outs, dim=1))  # [B, leaves * C, *spatial] -> [B, C, *spatial]
        y = outs[0]
        for o in outs[1:]:
            y = y + o
        return y


class CellNet(nn.Module):
    """Stem conv, stages of cells with stride-2 reductions between them, average pooling, classifier.

    A reduction is ReLU, a stride-2 3x3 conv from the previous stage's width to the next, and the norm.

    Args:
        spec: A ``cell`` :class:`~datasets.archs.space.ArchSpec`.

    Shapes:
        - input: ``[B, *spec.input_shape]``
        - output: ``[B, spec.num_classes]``
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        nd = len(spec.input_shape) - 1
        c_in, w0 = spec.input_shape[0], spec.widths[0]
        bias = spec.norm == "none"
        self.stem = nn.Sequential(conv_layer(nd, c_in, w0, spec.stem_kernel, bias=bias), norm_layer(spec.norm, w0, nd))
        body: list[nn.Module] = []
        for s, (width, n_cells) in enumerate(zip(spec.widths, spec.cells_per_stage, strict=True)):
            if s > 0:
                body.append(nn.Sequential(nn.ReLU(), conv_layer(nd, spec.widths[s - 1], width, 3, stride=2, bias=bias),
                                          norm_layer(spec.norm, width, nd)))
            body.extend(Cell(spec, width) for _ in range(n_cells))
        self.body = nn.Sequential(*body)
        self.classifier = nn.Linear(spec.widths[-1], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(self.stem(x)))  # [B, C, *spatial]
        return self.classifier(h.flatten(2).mean(-1))  # global average pooling -> [B, C] -> [B, classes]
