"""Render SIREN image INRs straight from flat parameter rows, and image edits used as targets.

The INR zoos store SIRENs (sine layers ``sin(w0 (x W^T + b))``, a linear last layer, output
``+ offset``). Rendering a batch of rows on a coordinate grid is differentiable, so an edit
metanetwork is trained with the loss measured on what the edited INR draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from graphs.layout import Layout

__all__ = ["EDITS", "SirenRenderer", "edit_image"]


def _dilate(img: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(img[:, None], 3, stride=1, padding=1)[:, 0]


def _contrast(img: torch.Tensor) -> torch.Tensor:
    return ((img - 0.5) * 1.5 + 0.5).clamp(0, 1)


EDITS = {"dilate": _dilate, "contrast": _contrast}


def edit_image(name: str, img: torch.Tensor) -> torch.Tensor:
    """Apply edit ``name`` (``dilate``: 3x3 max filter; ``contrast``: x1.5 around 0.5) to ``img [B, H, W]``."""
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; choose one of {sorted(EDITS)}")
    return EDITS[name](img)


class SirenRenderer(torch.nn.Module):
    """Draw ``[B, H, W]`` images from ``[B, num_params]`` SIREN rows of one layout.

    Args:
        layout: A layout whose parameters are ``weight, bias`` pairs of a chain of linear layers.
        size: Image height and width; pixel ``(r, c)`` is drawn at ``(x, y) = (linspace(-1, 1, W)[c],
            linspace(-1, 1, H)[r])``, row-major, the convention the INR zoos are fitted with.
        w0: Sine frequency factor.
        offset: Constant added to the output.
    """

    def __init__(self, layout: Layout, size: tuple[int, int], w0: float = 30.0, offset: float = 0.5) -> None:
        super().__init__()
        params = list(layout.params)
        if len(params) < 4 or len(params) % 2 or any(
                len(w.shape) != 2 or b.shape != (w.shape[0],) for w, b in zip(params[::2], params[1::2], strict=True)):
            raise ValueError("SirenRenderer needs a chain of linear layers (weight [out, in], bias [out]); "
                             f"layout {layout.name}#{layout.fingerprint} has {[p.shape for p in params]}")
        pairs = zip(params[::2], params[1::2], strict=True)
        self.slices = [(w.offset, w.shape, b.offset, b.shape[0]) for w, b in pairs]
        self.w0, self.offset, self.size = w0, offset, tuple(size)
        h, w = size
        ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.flatten(), gy.flatten()], -1)
        self.register_buffer("coords", grid)  # (H*W, 2)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        b = rows.shape[0]
        x = self.coords.to(rows.dtype).expand(b, -1, -1)  # (B, HW, 2)
        for i, (wo, (n_out, n_in), bo, _) in enumerate(self.slices):
            weight = rows[:, wo:wo + n_out * n_in].reshape(b, n_out, n_in)
            bias = rows[:, bo:bo + n_out]
            x = torch.einsum("bpi,boi->bpo", x, weight) + bias[:, None, :]
            if i < len(self.slices) - 1:
                x = torch.sin(self.w0 * x)
        return (x[..., 0] + self.offset).reshape(b, *self.size)
