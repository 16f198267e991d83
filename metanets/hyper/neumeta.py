r"""NeuMeta-style weight manifold: one implicit function from weight coordinates to weight values.

Every weight of a member of a width family (``graphs.width``) has coordinates: the id of its tensor,
the normalized position of its output and input unit (``(i + 0.5) / n`` in a permutable group of
``n`` units, ``i / (n - 1)`` in a fixed one), up to three further offsets (kernel positions, the
positions of a flattened feature map, the block of a concatenation), the ratio of each of its two
groups' sizes to their full sizes, and the network's width ratio. The output-side coordinates
:math:`c_o` (out unit, its group's ratio, width) and the input-side ones :math:`c_i` (in unit, offsets,
its group's ratio, width) go through two residual MLPs :math:`A, B` (Fourier features of the unit and
offset coordinates; the ratios as they are, so that the function is smooth in the width), with an
embedding of the tensor, and a weight is their scaled inner product, per tensor rescaled by the mean
and standard deviation of that tensor in the full network, times the fan-in factor :math:`f`, the length
of the weight's input axis in the full network over its length in the sampled one:

.. math:: w = f \left( \mu_t + \sigma_t \left( \langle A(c_o), B(c_i) \rangle / \sqrt{d} + b_t \right) \right)

A layer's pre-activation is a sum over its inputs; a narrow network sums over fewer of them, and
without :math:`f` its pre-activations (and their balance against the biases) would shrink with the width
of the input group, 4x at width 0.25. With :math:`f` the sampled sum is a quadrature of the same sum
over the full network's units, so every width starts from one consistent function (exactly so for a
manifold that is constant along the units); :math:`f = 1` at width 1.0.

A unit of a group of ``n`` units stands for a cell of width ``1 / n``: its unit coordinate's Fourier
features are averaged over a Gaussian of std ``1 / (2 n)`` (:func:`fourier_features`), so the
frequencies that ``n`` samples cannot resolve fade out at narrow widths instead of aliasing.

Each distinct unit is evaluated once (not each weight), and the rank-``d`` products can represent any
weight matrix of up to ``d`` units. A network of any width in the family is sampled by evaluating the
function at its coordinates.
BatchNorm affine parameters are generated like any vector; running statistics are not generated but
recomputed on a few batches of data at the sampled width (:func:`sample_state_dict`).

Training (:class:`NeuMetaLoss`): the cross-entropy of networks sampled at a width (through
``functional_call``, BatchNorm on batch statistics) plus the reconstruction of the smoothed full
network at width 1.0, with Gaussian noise on the unit coordinates (a fraction of the unit spacing)
so that the function is smooth between the units of every width. Nothing here reads or writes files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import graphs
from graphs.layout import Layout
from graphs.width import WidthFamily, unit_coordinates
from metanets.hyper.apply import full_state_dict, functional_forward, recompute_bn_stats

__all__ = ["Coords", "NeuMeta", "NeuMetaConfig", "NeuMetaLoss", "element_coords", "fourier_features", "sample_params",
           "sample_state_dict"]

N_OFFSETS = 3
"""Offset coordinates per weight besides its output and input unit (kernel positions ...)."""
N_CONT = 2 + N_OFFSETS + 3
"""Continuous coordinates: out, in, offsets, out-group ratio, in-group ratio, network width."""


@dataclass
class NeuMetaConfig:
    """Size of the implicit function, and the full network's layout (what rebuilds the model)."""

    layout: str = ""
    hidden: int = 64
    layers: int = 4
    frequencies: int = 6
    fan_in_scale: bool = True
    """Multiply each weight by its full fan-in over its sampled fan-in (:attr:`Coords.fan_in`)."""
    cell_filter: bool = True
    """Average each unit coordinate's Fourier features over its cell (:func:`fourier_features`)."""


OUT_COLS = (0, 5, 7)
"""Continuous coordinates of a weight's output side: out unit, out-group ratio, width."""
IN_COLS = (1, 2, 3, 4, 6, 7)
"""Continuous coordinates of a weight's input side: in unit, offsets, in-group ratio, width."""


@dataclass
class Coords:
    """The coordinates of every generated weight of one network (tensors in layout order, flattened).

    Each weight's coordinates are split into an output side and an input side (:data:`OUT_COLS`,
    :data:`IN_COLS`, each with the tensor id); the distinct rows of each side are stored once.

    Attributes:
        names: Generated tensors (the layout's parameters, buffers excluded).
        shapes: Their shapes.
        tensor_id: ``[E]`` index of each weight's tensor among the full network's parameters.
        out_rows: ``[U_o, 1 + 3]`` distinct output sides (tensor id, coordinates); ``in_rows`` likewise.
        out_spacing: ``[U_o]`` unit spacing of the out coordinate (0 on fixed groups): the noise scale.
        out_index: ``[E]`` row of each weight's output side; ``in_index`` likewise.
        fan_in: ``[E]`` length of each weight's input axis in the full network over its length here: the
            factor that keeps a layer's pre-activation (a sum over its inputs) at the full network's scale
            when the input group is narrower (1 at width 1.0, on fixed input axes and on tensors without one).
        width: The network's width ratio.
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    tensor_id: torch.Tensor
    out_rows: torch.Tensor
    out_spacing: torch.Tensor
    out_index: torch.Tensor
    in_rows: torch.Tensor
    in_spacing: torch.Tensor
    in_index: torch.Tensor
    fan_in: torch.Tensor
    width: float

    def to(self, device: torch.device | str) -> Coords:
        """A copy on ``device``."""
        t = [x.to(device) for x in (self.tensor_id, self.out_rows, self.out_spacing, self.out_index, self.in_rows,
                                     self.in_spacing, self.in_index, self.fan_in)]
        return Coords(self.names, self.shapes, *t, self.width)


def _distinct(tid: torch.Tensor, values: torch.Tensor, spacing: torch.Tensor):
    """``(distinct rows [U, 1 + k], their spacing [U], row of every weight [E])``."""
    rows = torch.cat([tid[:, None].double(), values, spacing[:, None]], dim=1)
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return uniq[:, :-1].float(), uniq[:, -1].float(), inverse


def _axis(layout: Layout, full: Layout, label) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """``(unit coordinate, spacing, size ratio, [extra coordinates])``, each ``[axis length]``, of one axis."""
    tag = label[0]
    if tag == "u":
        one = torch.ones(1, dtype=torch.float64)
        return one * 0.5, one * 0, one, []
    if tag == "a":
        g = layout.groups[label[1]]
        n = g.size
        if g.fixed:
            unit = torch.arange(n, dtype=torch.float64) / max(n - 1, 1) if n > 1 else torch.full((1,), 0.5,
                                                                                                dtype=torch.float64)
            return unit, torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64), []
        ratio = n / full.groups[label[1]].size
        return unit_coordinates(n), torch.full((n,), 1.0 / n, dtype=torch.float64), \
            torch.full((n,), ratio, dtype=torch.float64), []
    parts = [_axis(layout, full, x) for x in label[1]]
    if tag == "c":
        k = len(parts)
        n_extra = max(len(p[3]) for p in parts)
        block = torch.cat([torch.full_like(p[0], b / max(k - 1, 1)) for b, p in enumerate(parts)])
        extras = [torch.cat([p[3][e] if e < len(p[3]) else torch.zeros_like(p[0]) for p in parts])
                  for e in range(n_extra)]
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]),
                [block, *extras])
    # a row-major product: the first permutable factor is the unit, the other factors are offsets
    movable = [i for i, x in enumerate(label[1]) if x[0] == "a" and not layout.groups[x[1]].fixed]
    main = movable[0] if movable else 0
    sizes = [p[0].numel() for p in parts]

    def spread(i: int, v: torch.Tensor) -> torch.Tensor:
        shape = [1] * len(sizes)
        shape[i] = sizes[i]
        return v.reshape(shape).expand(*sizes).reshape(-1)

    extras = [spread(i, p[0]) for i, p in enumerate(parts) if i != main]
    extras += [spread(i, e) for i, p in enumerate(parts) for e in p[3]]
    return spread(main, parts[main][0]), spread(main, parts[main][1]), spread(main, parts[main][2]), extras


def element_coords(layout: Layout, full: Layout, width: float) -> Coords:
    """The coordinates of every parameter of ``layout`` (a member of the family whose full layout is ``full``).

    Raises:
        ValueError: A parameter with more than :data:`N_OFFSETS` offset coordinates.
    """
    full_ids = {p.name: i for i, p in enumerate(q for q in full.params if not q.is_buffer)}
    full_shapes = {p.name: p.shape for p in full.params}
    names, shapes, tids, vals, spacings, fans = [], [], [], [], [], []
    for p in layout.params:
        if p.is_buffer:
            continue
        axes = [_axis(layout, full, lab) for lab in p.axes]
        nd = len(p.shape)
        if p.direction is not None:
            in_ax, out_ax = p.direction
        else:
            movable = [a for a, ax in enumerate(axes) if bool((ax[1] > 0).any())]
            out_ax, in_ax = (movable[-1] if movable else 0), None

        def spread(a: int, v: torch.Tensor, nd: int = nd, p=p) -> torch.Tensor:
            shape = [1] * nd
            shape[a] = p.shape[a]
            return v.reshape(shape).expand(*p.shape).reshape(-1)

        out = [spread(out_ax, v) for v in axes[out_ax][:3]]
        inn = [spread(in_ax, v) for v in axes[in_ax][:3]] if in_ax is not None else \
            [torch.full((p.numel,), 0.5, dtype=torch.float64), torch.zeros(p.numel, dtype=torch.float64),
             torch.ones(p.numel, dtype=torch.float64)]
        extras = [spread(a, e) for a, ax in enumerate(axes) for e in ax[3] if a in (out_ax, in_ax)]
        extras += [spread(a, axes[a][0]) for a in range(nd) if a not in (out_ax, in_ax)]
        extras += [spread(a, e) for a, ax in enumerate(axes) for e in ax[3] if a not in (out_ax, in_ax)]
        if len(extras) > N_OFFSETS:
            raise ValueError(f"parameter '{p.name}' of shape {p.shape} has {len(extras)} offset coordinates; "
                             f"the weight manifold handles at most {N_OFFSETS} (kernels up to 3-D)")
        extras += [torch.zeros(p.numel, dtype=torch.float64)] * (N_OFFSETS - len(extras))
        grids = [out[0], inn[0], *extras, out[2], inn[2], torch.full((p.numel,), float(width), dtype=torch.float64)]
        if p.name not in full_ids:
            raise ValueError(f"parameter '{p.name}' is not in the full network the manifold was trained for")
        names.append(p.name)
        shapes.append(tuple(p.shape))
        tids.append(torch.full((p.numel,), full_ids[p.name], dtype=torch.long))
        vals.append(torch.stack(grids, dim=1))
        spacings.append(torch.stack([out[1], inn[1]], dim=1))
        fan = full_shapes[p.name][in_ax] / p.shape[in_ax] if in_ax is not None else 1.0
        fans.append(torch.full((p.numel,), fan, dtype=torch.float32))
    tid, vals, spacing = torch.cat(tids), torch.cat(vals), torch.cat(spacings)
    out = _distinct(tid, vals[:, list(OUT_COLS)], spacing[:, 0])
    inn = _distinct(tid, vals[:, list(IN_COLS)], spacing[:, 1])
    return Coords(names, shapes, tid, *out, *inn, torch.cat(fans), float(width))


def fourier_features(v: torch.Tensor, freqs: torch.Tensor, n_fourier: int,
                     spacing: torch.Tensor | None = None) -> torch.Tensor:
    r"""``[U, C + 2 F k]``: the coordinates ``v [U, C]``, then sines and cosines of the first ``F`` at ``freqs [k]``.

    With ``spacing [U]`` (the unit spacing :math:`h` of each row's first coordinate, 0 on fixed groups) the
    first coordinate's features are their average over a Gaussian of std :math:`h / 2` around the unit,
    :math:`E[\sin \omega (x + \epsilon)] = \sin(\omega x) \, e^{-\omega^2 h^2 / 8}`: a unit of a group of
    ``n`` stands for a cell of width ``1 / n``, and the frequencies that its ``n`` samples cannot resolve
    (they alias to other frequencies at a narrow width) fade out, smoothly in the width.
    """
    x = v[:, :n_fourier, None] * freqs  # [U, F, k]
    sin, cos = torch.sin(x), torch.cos(x)
    if spacing is not None:
        damp = torch.exp(-(freqs * spacing[:, None]) ** 2 / 8.0)[:, None]  # [U, 1, k]
        sin = torch.cat([sin[:, :1] * damp, sin[:, 1:]], dim=1)
        cos = torch.cat([cos[:, :1] * damp, cos[:, 1:]], dim=1)
    return torch.cat([v, sin.flatten(-2), cos.flatten(-2)], dim=-1)


class _Side(nn.Module):
    """Residual MLP over the Fourier features of one side's coordinates (plus a tensor embedding)."""

    def __init__(self, n_cont: int, tensors: int, d: int, layers: int, k: int) -> None:
        super().__init__()
        self.n_fourier = n_cont - 2  # the last two (group ratio, width) enter as they are: smooth in the width
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(k, dtype=torch.float32))
        self.inp = nn.Linear(n_cont + self.n_fourier * 2 * k, d)
        self.embed = nn.Embedding(tensors, d)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
                                    for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))

    def forward(self, rows: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        tid = rows[:, 0].long()
        h = self.inp(fourier_features(rows[:, 1:], self.freqs, self.n_fourier, spacing)) + self.embed(tid)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class NeuMeta(nn.Module):
    r"""The implicit weight function of one width family (see the module docstring).

    A weight's value is a function of its output-side coordinates :math:`c_o` and input-side
    coordinates :math:`c_i` of separable form, :math:`\langle A(c_o), B(c_i) \rangle / \sqrt{d}`, with
    two residual MLPs :math:`A, B` over Fourier features: each distinct unit is evaluated once, and
    the rank-``hidden`` products can represent any weight matrix of up to ``hidden`` units.

    Shapes:
        input: :class:`Coords` of ``E`` weights; output: ``{name: tensor}`` of the sampled network.
    """

    def __init__(self, config: NeuMetaConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = Layout.from_json(config.layout)
        self.names = [p.name for p in self.layout.params if not p.is_buffer]
        t, d, k = len(self.names), config.hidden, config.frequencies
        self.out_side = _Side(len(OUT_COLS), t, d, config.layers, k)
        self.in_side = _Side(len(IN_COLS), t, d, config.layers, k)
        self.bias = nn.Parameter(torch.zeros(t))
        self.register_buffer("mean", torch.zeros(t))
        self.register_buffer("std", torch.ones(t))

    @property
    def device(self) -> torch.device:
        """Where the model is."""
        return self.bias.device

    def set_scale(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Take each tensor's mean and standard deviation from the full network's ``state_dict``."""
        for i, n in enumerate(self.names):
            v = state_dict[n].detach().double()
            std = float(v.std()) if v.numel() > 1 else 0.0
            self.mean[i] = float(v.mean())
            self.std[i] = max(std, 0.1 * abs(float(v.mean())), 1e-3)

    def values(self, coords: Coords, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[E]`` generated weight values; ``noise`` jitters unit coordinates by that many unit spacings (std)."""
        sides = []
        for rows, spacing in ((coords.out_rows, coords.out_spacing), (coords.in_rows, coords.in_spacing)):
            if noise > 0:
                eps = torch.randn(spacing.shape, device=rows.device, generator=generator) * spacing * noise
                rows = torch.cat([rows[:, :1], rows[:, 1:2] + eps[:, None], rows[:, 2:]], dim=1)
            sides.append(rows)
        cell = self.config.cell_filter
        a = self.out_side(sides[0], coords.out_spacing if cell else None).float()[coords.out_index]
        b = self.in_side(sides[1], coords.in_spacing if cell else None).float()[coords.in_index]
        tid = coords.tensor_id
        out = self.mean[tid] + self.std[tid] * ((a * b).sum(-1) / math.sqrt(a.shape[-1]) + self.bias[tid])
        return out * coords.fan_in if self.config.fan_in_scale else out

    def forward(self, coords: Coords, noise: float = 0.0) -> dict[str, torch.Tensor]:
        flat = self.values(coords, noise)
        sizes = [math.prod(s) for s in coords.shapes]
        return {n: t.view(s) for n, s, t in zip(coords.names, coords.shapes, flat.split(sizes), strict=True)}


class NeuMetaLoss(nn.Module):
    """One training step's loss: cross-entropy of sampled networks + reconstruction of the full network.

    ``forward(nets, coords, x, y, full_coords, target, noise, recon_weight, teacher=None, distill_weight=0)``
    returns ``(loss, cross-entropy, reconstruction, accuracy)``; the reconstruction is the mean squared error
    at width 1.0 in units of each tensor's standard deviation. With ``teacher`` (the full network's logits on
    ``x``) and ``distill_weight > 0``, the loss adds ``distill_weight`` x the KL divergence from the teacher's
    predicted distribution to each sampled network's (temperature 1), averaged over the sampled networks.
    """

    def __init__(self, model: NeuMeta) -> None:
        super().__init__()
        self.model = model

    def forward(self, nets: Sequence[nn.Module], coords: Sequence[Coords], x: torch.Tensor, y: torch.Tensor,
                full_coords: Coords, target: torch.Tensor, noise: float, recon_weight: float,
                teacher: torch.Tensor | None = None, distill_weight: float = 0.0):
        ces, kls, correct = [], [], []
        for net, c in zip(nets, coords, strict=True):
            logits = functional_forward(net, self.model(c, noise), x).float()
            ces.append(F.cross_entropy(logits, y))
            if teacher is not None and distill_weight > 0:
                kls.append(F.kl_div(F.log_softmax(logits, -1), F.log_softmax(teacher.float(), -1),
                                    reduction="batchmean", log_target=True))
            correct.append((logits.argmax(-1) == y).float().mean())
        ce = torch.stack(ces).mean()
        tid = full_coords.tensor_id
        pred = self.model.values(full_coords, noise)
        recon = (((pred - target) / self.model.std[tid]) ** 2).mean()
        loss = ce + recon_weight * recon
        if kls:
            loss = loss + distill_weight * torch.stack(kls).mean()
        return loss, ce.detach(), recon.detach(), torch.stack(correct).mean().detach()


def sample_params(model: NeuMeta, layout: Layout, width: float) -> dict[str, torch.Tensor]:
    """The generated parameters (no BatchNorm statistics) of the member of the family with ``layout``.

    Raises:
        ValueError: ``layout`` is not a member of the family the model was trained on.
    """
    WidthFamily(model.layout, {1.0: model.layout}).check(layout, width)
    coords = element_coords(layout, model.layout, width).to(model.device)
    with torch.no_grad():
        return model(coords)


def sample_state_dict(model: NeuMeta, module: nn.Module, width: float, x: torch.Tensor,
                      bn_batches: int = 4, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """A state_dict of ``module`` (built by the family's factory at ``width``) sampled from the manifold.

    ``module`` is traced on ``x[:2]``; BatchNorm running statistics are recomputed on the first
    ``bn_batches`` batches of ``x``. ``module.load_state_dict(result, strict=True)`` accepts the result.

    Raises:
        ValueError: ``module`` is not a member of the family (the message names what differs).
    """
    dev = model.device
    module = module.to(dev)
    layout = graphs.trace(module, (x[:2].to(dev),))
    params = full_state_dict(module, sample_params(model, layout, width))
    if any(p.role == "running_mean" for p in layout.params):
        x = x.to(dev)
        params = recompute_bn_stats(module, params, [x[i:i + batch_size]
                                                     for i in range(0, min(len(x), bn_batches * batch_size),
                                                                    batch_size)])
    return {k: v.detach().clone() for k, v in params.items()}
