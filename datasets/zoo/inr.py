"""Fit many SIRENs at once: one batched model whose every linear layer is a ``bmm`` over the images.

Each image gets its own SIREN (:class:`datasets.zoo.models.Siren`: DWSNets/NFN convention). Stacking
their weights on a leading model axis turns N small networks into one batched network; the loss is
the *sum* of the per-image MSEs, so each SIREN receives exactly its own gradient, and Adam (an
elementwise optimizer) updates each exactly as if it were trained alone. Initial weights depend only
on ``(seed, image index)``, never on which other images share the batch. With
``SirenConfig.shared_init`` every SIREN starts from one initialization that depends on ``seed``
alone (as functa-style INR datasets do), so the fitted weights differ by what each image needs, not
by initialization noise; without it, each image has its own random start.

Coordinates follow DWSNets' ``make_coordinates``: pixel ``(row r, column c)`` of an ``H x W`` image
sits at ``(x, y) = (linspace(-1, 1, W)[c], linspace(-1, 1, H)[r])``, flattened row-major.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch

__all__ = ["SirenConfig", "SirenFit", "fit_sirens", "make_coordinates", "render_sirens", "siren_param_shapes"]


@dataclass(frozen=True)
class SirenConfig:
    """How to fit SIRENs.

    Attributes:
        hidden: Hidden width.
        depth: Linear layers in total (sine layers + the linear output layer).
        w0: Sine frequency factor.
        offset: Output offset (DWSNets: 0.5).
        steps: Adam steps (full batch over all pixels).
        lr: Adam learning rate.
        batch_size: Images fitted together in one batched model.
        shared_init: Start every SIREN from the same initialization (drawn from the seed alone)
            instead of one drawn per image.
    """

    hidden: int = 32
    depth: int = 3
    w0: float = 30.0
    offset: float = 0.5
    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 512
    shared_init: bool = False


@dataclass
class SirenFit:
    """Fitted SIRENs.

    Attributes:
        params: ``Siren`` state_dict keys -> stacked tensors ``[N, *shape]`` (float32, CPU).
        psnr: ``[N]`` peak signal-to-noise ratio (dB, peak 1) of each fit on its own image.
        mse: ``[N]`` mean squared error.
    """

    params: dict[str, torch.Tensor]
    psnr: torch.Tensor
    mse: torch.Tensor


def make_coordinates(height: int, width: int) -> torch.Tensor:
    """Pixel coordinates ``[height * width, 2]`` as ``(x, y)`` in ``[-1, 1]``, row-major (DWSNets order)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def siren_param_shapes(cfg: SirenConfig, in_features: int = 2, out_features: int = 1) -> dict[str, tuple]:
    """State-dict keys and shapes of one SIREN, in ``Siren.state_dict()`` order."""
    dims = [in_features] + [cfg.hidden] * (cfg.depth - 1) + [out_features]
    shapes = {}
    for i, (a, b) in enumerate(pairwise(dims)):
        shapes[f"seq.{i}.weight"] = (b, a)
        shapes[f"seq.{i}.bias"] = (b,)
    return shapes


def _init_one(cfg: SirenConfig, shapes: dict[str, tuple], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out, last = {}, cfg.depth - 1
    for i in range(cfg.depth):
        w_shape = shapes[f"seq.{i}.weight"]
        fan_in = w_shape[1]
        if i < last:  # sine layers: SIREN init, zero bias (as DWSNets)
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / cfg.w0
            out[f"seq.{i}.weight"] = torch.empty(w_shape).uniform_(-bound, bound, generator=gen)
            out[f"seq.{i}.bias"] = torch.zeros(w_shape[0])
        else:  # nn.Linear's default init
            bound = 1.0 / math.sqrt(fan_in)
            out[f"seq.{i}.weight"] = torch.empty(w_shape).uniform_(-bound, bound, generator=gen)
            out[f"seq.{i}.bias"] = torch.empty(w_shape[0]).uniform_(-bound, bound, generator=gen)
    return out


def _forward(params: list[torch.Tensor], coords: torch.Tensor, cfg: SirenConfig) -> torch.Tensor:
    """Batched SIREN: ``coords [P, d]`` -> ``[N, P, out]``; ``params`` alternate weight ``[N, o, i]``, bias."""
    n = params[0].shape[0]
    h = coords.expand(n, *coords.shape)  # [N, P, d]
    last = len(params) // 2 - 1
    for i in range(last + 1):
        w, b = params[2 * i], params[2 * i + 1]
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # [N, P, o]
        if i < last:
            h = torch.sin(cfg.w0 * h)
    return h + cfg.offset


def render_sirens(params: dict[str, torch.Tensor], height: int, width: int, cfg: SirenConfig) -> torch.Tensor:
    """Evaluate stacked SIRENs on the pixel grid: ``[N, C, height, width]``."""
    coords = make_coordinates(height, width).to(next(iter(params.values())).device)
    out = _forward(list(params.values()), coords, cfg)  # [N, P, C]
    return out.transpose(1, 2).reshape(out.shape[0], -1, height, width)


def fit_sirens(images: torch.Tensor, cfg: SirenConfig, seed: int = 0, device: str | torch.device = "cpu",
               first_index: int = 0, progress: Callable[[int], None] | None = None) -> SirenFit:
    """Fit one SIREN per image.

    Args:
        images: ``[N, C, H, W]`` values in ``[0, 1]``.
        cfg: Architecture and optimization settings.
        seed: Base seed; image ``k`` is initialized from ``seed * 1_000_003 + first_index + k``, or
            from ``seed * 1_000_003`` for every image when ``cfg.shared_init``.
        device: Where to train (results come back on CPU).
        first_index: Global index of ``images[0]`` (so a zoo fitted in chunks matches one fitted at once).
        progress: Called with the number of images finished after each batch.

    Returns:
        The stacked parameters and per-image PSNR/MSE after the last step.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    shapes = siren_param_shapes(cfg, 2, c)
    coords = make_coordinates(h, w).to(device)
    chunks: list[dict[str, torch.Tensor]] = []
    mses: list[torch.Tensor] = []
    for start in range(0, n, cfg.batch_size):
        stop = min(n, start + cfg.batch_size)
        inits = [_init_one(cfg, shapes, torch.Generator().manual_seed(
            seed * 1_000_003 + (0 if cfg.shared_init else first_index + k))) for k in range(start, stop)]
        params = [torch.stack([p[key] for p in inits]).to(device).requires_grad_() for key in shapes]
        target = images[start:stop].to(device).flatten(2).transpose(1, 2)  # [B, P, C]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(cfg.steps):
            opt.zero_grad(set_to_none=True)
            loss = ((_forward(params, coords, cfg) - target) ** 2).mean(dim=(1, 2)).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            mses.append(((_forward(params, coords, cfg) - target) ** 2).mean(dim=(1, 2)).cpu())
        chunks.append({key: p.detach().cpu() for key, p in zip(shapes, params, strict=True)})
        if progress is not None:
            progress(stop - start)
    stacked = {key: torch.cat([ch[key] for ch in chunks]) for key in shapes}
    mse = torch.cat(mses)
    return SirenFit(stacked, 10 * torch.log10(1.0 / mse.clamp_min(1e-12)), mse)
