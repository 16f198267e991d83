"""Per-parameter feature normalization, fitted on training graphs and stored with the model."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.param_graph import EDGE_TYPES

__all__ = ["Normalizer", "slot_mask"]


class Normalizer(nn.Module):
    r"""Standardize edge and node features per parameter tensor (``edge_param``) or per edge type.

    Weights of different layers live on very different scales (a BatchNorm variance near 1, a
    deep linear layer near 1e-2), so each parameter tensor is scaled by its own training-set
    statistics: :math:`\hat e = (e - \mu_p) / \sigma_p`. Statistics are buffers: they travel with
    the checkpoint and are invariant under neuron permutations (they are per tensor, not per neuron).

    Args:
        num_keys: Number of statistics slots (parameters of a layout, or ``len(EDGE_TYPES)``).
        by: ``"param"`` (one slot per ``edge_param``; single-architecture zoos) or ``"type"``
            (one slot per ``edge_type``; mixed architectures).

    Shapes:
        input: a batch with ``edge_attr [E, K]``, ``x [N, K]``, ``edge_param [E]``/``edge_type [E]``.
        output: the same batch object with normalized ``edge_attr`` and ``x`` (new tensors).
    """

    def __init__(self, num_keys: int = len(EDGE_TYPES), by: str = "type") -> None:
        super().__init__()
        if by not in ("param", "type"):
            raise ValueError(f"Normalizer(by={by!r}): use 'param' or 'type'")
        self.by = by
        self.register_buffer("mean", torch.zeros(num_keys))
        self.register_buffer("std", torch.ones(num_keys))
        self.register_buffer("node_mean", torch.zeros(()))
        self.register_buffer("node_std", torch.ones(()))

    def keys(self, batch: Batch) -> torch.Tensor:
        """The statistics slot of every edge."""
        return batch.edge_param if self.by == "param" else batch.edge_type

    @torch.no_grad()
    def fit(self, batches) -> Normalizer:
        """Accumulate mean/std of non-padding features over an iterable of batches."""
        n = torch.zeros_like(self.mean, dtype=torch.float64)
        s1, s2 = n.clone(), n.clone()
        nn_, ns1, ns2 = 0.0, 0.0, 0.0
        for b in batches:
            k = self.keys(b).to(n.device)
            vals = b.edge_attr.double()
            mask = slot_mask(b, "edge")  # zero padding of packed kernels is not data
            n.index_add_(0, k, mask.sum(1).double())
            s1.index_add_(0, k, (vals * mask).sum(1))
            s2.index_add_(0, k, (vals.square() * mask).sum(1))
            xm = slot_mask(b, "x")
            nn_ += float(xm.sum())
            ns1 += float(b.x.double()[xm].sum())
            ns2 += float(b.x.double()[xm].square().sum())
        mean = s1 / n.clamp(min=1)
        var = (s2 / n.clamp(min=1) - mean.square()).clamp(min=0)
        self.mean.copy_(mean.float())
        self.std.copy_(torch.where(n > 1, var.sqrt().clamp(min=1e-8), torch.ones_like(var)).float())
        if nn_ > 1:
            m = ns1 / nn_
            self.node_mean.fill_(m)
            self.node_std.fill_(max((ns2 / nn_ - m * m), 0.0) ** 0.5 or 1.0)
        return self

    def forward(self, batch: Batch) -> Batch:
        k = self.keys(batch)
        mask = slot_mask(batch, "edge")
        dt = batch.edge_attr.dtype
        ea = (batch.edge_attr - self.mean[k, None].to(dt)) / self.std[k, None].to(dt)
        out = batch.clone()
        out.edge_attr = ea * mask
        xm = slot_mask(batch, "x")
        out.x = (batch.x - self.node_mean) / self.node_std * xm
        return out


def slot_mask(batch: Batch, what: str) -> torch.Tensor:
    """Slots holding parameters (``edge_mask``/``x_mask``), cropped or padded to the feature width."""
    feats = batch.edge_attr if what == "edge" else batch.x
    mask = getattr(batch, "edge_mask" if what == "edge" else "x_mask", None)
    if mask is None:
        raise ValueError("batch has no edge_mask/x_mask; build graphs with graphs.to_graph / vector_to_graph")
    k = feats.shape[-1]
    if mask.shape[-1] < k:
        mask = torch.nn.functional.pad(mask, (0, k - mask.shape[-1]))
    return mask[:, :k]
