"""Scatter aggregations of edge features onto nodes, with a cheap backward for max and min.

Same results as PyG's ``scatter``/``MultiAggregation`` for mean, sum, max, min and std (empty
segments give 0), computed for one or several index rows (e.g. both directions of a graph's edges)
in one autograd node. Max/min store one arg-extreme edge per (node, channel) in the forward, so
their backward scatters ``N * C`` values instead of making PyTorch's several passes over the edges,
and the backward of all reductions writes one ``[E, C]`` gradient. Pure torch ops: CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["REDUCTIONS", "gather_sum", "scatter_aggregate", "scatter_extreme"]

REDUCTIONS = ("mean", "sum", "max", "min", "std")
_EXTREME = {"max": "amax", "min": "amin"}


def _gather_rows(tables: list[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """``sum_k tables[k][index[k]]`` in one pass over the output (an ``embedding_bag`` sum)."""
    if len(tables) == 1:
        return tables[0].index_select(0, index[0])
    n = tables[0].shape[0]
    offsets = torch.arange(len(tables), device=index.device).view(-1, 1) * n
    return F.embedding_bag((index + offsets).t().contiguous(), torch.cat(tables), mode="sum")


def _count(index: torch.Tensor, dim_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows per target, at least 1 (the divisor of mean), as a ``[dim_size, 1]`` column."""
    return torch.bincount(index, minlength=dim_size).clamp_(min=1).to(dtype).view(-1, 1)


class _Aggregate(torch.autograd.Function):
    """sum, mean, max and min of ``src`` rows per target, for each row of ``index`` (see scatter_aggregate).

    max/min: where several rows tie for the extreme of a (node, channel), the whole gradient goes to
    the one with the smallest row id. That is a valid subgradient; PyTorch's ``scatter_reduce``
    splits it evenly among the tied rows instead, so gradients differ from it only at exact ties.
    A NaN extreme gets no gradient.
    """

    @staticmethod
    def forward(ctx, src: torch.Tensor, index: torch.Tensor, dim_size: int,
                reductions: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
        rows, channels = src.shape
        outs, counts, args = [], [], []
        # Extreme keys: rows equal to their segment's extreme get rows - id (>= 1), the others 0, so the largest
        # key per (node, channel) marks the smallest tied id and 0 an empty segment. Float keys take
        # scatter_reduce's fast CPU path; float32 holds the ids exactly below 2**24.
        key_dtype = torch.float32 if rows < 2**24 else torch.float64
        rev = torch.arange(rows, 0, -1, dtype=key_dtype, device=src.device).view(-1, 1)
        for idx in index:
            total = count = None
            if any(r in ("sum", "mean") for r in reductions):
                total = src.new_zeros(dim_size, channels).index_add_(0, idx, src)
                count = _count(idx, dim_size, src.dtype)
            counts.append(count)
            for r in reductions:
                if r == "sum":
                    outs.append(total)
                elif r == "mean":
                    outs.append(total / count)
                else:
                    wide = idx.view(-1, 1).expand(rows, channels)
                    out = src.new_zeros(dim_size, channels).scatter_reduce_(0, wide, src, _EXTREME[r],
                                                                            include_self=False)
                    outs.append(out)
                    if not ctx.needs_input_grad[0]:
                        continue  # no backward: skip the arg-extreme
                    key = torch.eq(src, out.index_select(0, idx), out=src.new_empty(src.shape, dtype=key_dtype))
                    key.mul_(rev)
                    best = key.new_zeros(out.shape).scatter_reduce_(0, wide, key, "amax")
                    args.append(rows - best.long())  # (dim_size, C) in [0, rows]; rows: empty segment
        ctx.save_for_backward(index, *[c for c in counts if c is not None], *args)
        ctx.set_materialize_grads(False)  # unused outputs: None gradients, skipped
        ctx.dims = (rows, channels, dim_size)
        ctx.dtype = src.dtype
        ctx.reductions = reductions
        ctx.has_count = counts[0] is not None
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        index, *saved = ctx.saved_tensors
        rows, channels, dim_size = ctx.dims
        k = index.shape[0]
        counts, args = (saved[:k], saved[k:]) if ctx.has_count else ([None] * k, saved)
        grads_per_row = [grads[i * len(ctx.reductions):(i + 1) * len(ctx.reductions)] for i in range(k)]
        # sum and mean: every row of a segment gets the segment's gradient (/ count for mean).
        tables, gather_index, extremes = [], [], []
        for i, (gs, count) in enumerate(zip(grads_per_row, counts, strict=True)):
            table = None
            for r, g in zip(ctx.reductions, gs, strict=True):
                if g is None or r in _EXTREME:
                    continue
                term = g if r == "sum" else g / count
                table = term if table is None else table + term
            if table is not None:
                tables.append(table)
                gather_index.append(index[i])
            extremes += [g for r, g in zip(ctx.reductions, gs, strict=True) if r in _EXTREME]
        if tables:
            out = _gather_rows(tables, torch.stack(gather_index))
        else:
            out = torch.zeros(rows, channels, dtype=ctx.dtype, device=index.device)
        # max and min: each (node, channel) gradient goes to its arg-extreme row (none for empty segments).
        pos, val = [], []
        for arg, g in zip(args, extremes, strict=True):
            if g is not None and rows > 0:
                valid = arg < rows
                pos.append((arg.clamp(max=rows - 1) * channels + torch.arange(channels, device=arg.device)).view(-1))
                val.append((g * valid).view(-1))
        if pos:
            out.view(-1).scatter_add_(0, torch.cat(pos), torch.cat(val))
        return out, None, None, None


def scatter_aggregate(src: torch.Tensor, index: torch.Tensor, dim_size: int,
                      reductions: tuple[str, ...] | list[str]) -> list[list[torch.Tensor]]:
    """Several aggregations of ``src`` rows per target, for each row of ``index``, as PyG computes them.

    For each index row (e.g. ``edge_index.flip(0)``: incoming, then outgoing edges), each reduction
    gives ``[dim_size, C]``, equal to PyG's ``MultiAggregation``: sum; mean = sum / max(count, 1);
    max/min = ``scatter_reduce(..., include_self=False)`` on zeros; std =
    ``sqrt(clamp(mean(x^2) - mean(x)^2, 1e-5))``, set to 0 where ``<= sqrt(1e-5)``. Every reduction
    gives 0 on a target with no rows. Gradients equal PyG's except at exact ties of max/min (see
    :func:`scatter_extreme`).

    Shapes:
        input: ``src [E, C]``, ``index [K, E]`` or ``[E]`` (values in ``[0, dim_size)``).
        output: ``K`` lists (one per index row) of ``len(reductions)`` tensors ``[dim_size, C]``.
    """
    bad = [r for r in reductions if r not in REDUCTIONS]
    if bad or not reductions:
        raise ValueError(f"reductions={reductions!r}: use some of {', '.join(REDUCTIONS)}")
    index = index.view(1, -1) if index.dim() == 1 else index
    base = tuple(dict.fromkeys(["mean" if r == "std" else r for r in reductions]))
    outs = _Aggregate.apply(src, index, dim_size, base)
    results = []
    for i, idx in enumerate(index):
        got = dict(zip(base, outs[i * len(base):(i + 1) * len(base)], strict=True))
        if "std" in reductions:
            count = _count(idx, dim_size, src.dtype)
            pow_sum = src.new_zeros(dim_size, src.shape[1]).index_add_(0, idx, src * src)
            var = pow_sum / count - got["mean"] * got["mean"]
            std = var.clamp(min=1e-5).sqrt()
            got["std"] = std.masked_fill(std <= math.sqrt(1e-5), 0.0)
        results.append([got[r] for r in reductions])
    return results


def scatter_extreme(src: torch.Tensor, index: torch.Tensor, dim_size: int, reduce: str = "max") -> torch.Tensor:
    """Per-target max (``reduce="max"``) or min of ``src`` rows; 0 where a target has no rows.

    Equals ``src.new_zeros(...).scatter_reduce_(0, index, src, "amax", include_self=False)`` (PyG's
    ``scatter(..., reduce="max")``). The backward sends each (target, channel) gradient to a single
    arg-extreme row, the smallest row id among exact ties (any subgradient is valid there; PyTorch
    splits it evenly among the ties).

    Shapes:
        input: ``src [E, C]``, ``index [E]`` (values in ``[0, dim_size)``); output: ``[dim_size, C]``.
    """
    if reduce not in _EXTREME:
        raise ValueError(f"reduce={reduce!r}: use max or min")
    return _Aggregate.apply(src, index.view(1, -1), dim_size, (reduce,))[0]


def gather_sum(tables: list[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """``sum_k tables[k][index[k]]``: gathers rows of same-shape tables and adds them, in one output pass.

    Shapes:
        input: ``K`` tables ``[N, C]``, ``index [K, E]`` (values in ``[0, N)``); output: ``[E, C]``.
    """
    return _GatherSum.apply(index, *tables)


class _GatherSum(torch.autograd.Function):
    """Autograd node of :func:`gather_sum`: the backward adds the output gradient into each table's rows."""

    @staticmethod
    def forward(ctx, index: torch.Tensor, *tables: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = tables[0].shape[0]
        return _gather_rows(list(tables), index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (index,) = ctx.saved_tensors
        out: list[torch.Tensor | None] = [None]
        for i, needed in enumerate(ctx.needs_input_grad[1:]):
            out.append(grad.new_zeros(ctx.num_rows, grad.shape[1]).index_add_(0, index[i], grad) if needed else None)
        return tuple(out)
