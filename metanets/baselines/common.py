"""Shared plumbing of the baselines: graph batches <-> flat parameter rows, per-tensor views, options.

Baselines that see a network as a vector or as a list of tensors (flat MLP, StatNN, NFN) read a
batch of ParamGraphs of one layout back into rows of the flat parameter vector with one gather
(the compiled ``inverse`` index of :func:`graphs.compile_layout`), and editing models write rows
back into graph features with :func:`graphs.batch.gather_features`. Both directions are
differentiable and do no per-graph Python work.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

import torch
from torch_geometric.data import Batch

from graphs.batch import batch_to_rows as graphs_batch_to_rows
from graphs.compile import compile_layout
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout
from metanets.config import ModelConfig
from metanets.normalize import Normalizer

__all__ = ["batch_to_rows", "check_task", "flat_norm_keys", "flat_scale", "layout_of",
           "pad_width", "parse_options", "split_params"]

T = TypeVar("T")


def parse_options(cls: type[T], cfg: ModelConfig) -> T:
    """Build the options dataclass ``cls`` from ``cfg.baseline``, naming unknown keys clearly."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(cfg.baseline) - known)
    if unknown:
        raise ValueError(f"model {cfg.name!r}: unknown options {unknown} in ModelConfig.baseline; "
                         f"{cls.__name__} accepts {sorted(known)}")
    return cls(**cfg.baseline)


def layout_of(cfg: ModelConfig) -> Layout:
    """The single layout a layout-bound baseline is built for (``cfg.layout_json``)."""
    if not cfg.layout_json:
        raise ValueError(f"model {cfg.name!r} works on zoos of one architecture and needs ModelConfig.layout_json "
                         f"(graphs.Layout.to_json() of that architecture); for zoos that mix architectures "
                         f"use 'deepsets' or a graph metanetwork ('gmn', 'pna', 'transformer')")
    return Layout.from_json(cfg.layout_json)


def batch_to_rows(batch: Batch, layout: Layout) -> torch.Tensor:
    r"""Flat parameter rows ``[B, num_params]`` of a batch of ParamGraphs of ``layout`` (differentiable).

    Each graph holds its parameters in ``cat(edge_attr.flatten(), x.flatten())``; the compiled
    ``inverse`` index picks them out in layout order, :math:`v_b = [a_b ; x_b]_{\mathrm{inverse}}`
    (:func:`graphs.batch.batch_to_rows`, after checking that the batch holds graphs of ``layout``).
    Row ``b`` equals ``graphs.graph_to_vector(batch.get_example(b))``.
    """
    got = getattr(batch, "layout", None)
    first = got[0] if isinstance(got, (list, tuple)) and got else got
    if isinstance(first, Layout) and first.fingerprint != layout.fingerprint:
        raise LayoutMismatchError(f"batch holds graphs of layout {first.name or ''}#{first.fingerprint}, but this "
                                  f"model was built for {layout.name or ''}#{layout.fingerprint}; it works on one "
                                  f"architecture only")
    return graphs_batch_to_rows(batch, layout)


def split_params(rows: torch.Tensor, layout: Layout) -> list[torch.Tensor]:
    """Views of ``rows [B, num_params]`` as the layout's tensors: ``[B, *shape]`` each, in layout order."""
    return [rows[:, p.offset:p.offset + p.numel].reshape(rows.shape[0], *p.shape) for p in layout.params]


def flat_norm_keys(layout: Layout, by: str) -> torch.Tensor:
    """The :class:`Normalizer` slot of every flat parameter element (``-1``: a node feature, scaled by ``node_std``).

    Returns:
        ``[num_params]`` long tensor.
    """
    c = compile_layout(layout)
    n_edge = c.edge_index.shape[1] * c.width
    inv = c.inverse
    keys_per_edge = c.edge_param if by == "param" else c.edge_type
    on_edge = inv < n_edge
    return torch.where(on_edge, keys_per_edge[(inv // c.width).clamp(max=max(c.edge_index.shape[1] - 1, 0))],
                       torch.full_like(inv, -1))


def flat_scale(normalizer: Normalizer, keys: torch.Tensor) -> torch.Tensor:
    r"""Training std :math:`\sigma_p` of every flat element (``keys`` from :func:`flat_norm_keys`): ``[num_params]``."""
    return torch.where(keys >= 0, normalizer.std[keys.clamp(min=0)], normalizer.node_std)


def pad_width(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad features ``[*, K]`` to ``width`` columns; refuse to drop columns."""
    k = t.shape[-1]
    if k > width:
        raise ValueError(f"graphs have feature width {k} but the model was built for {width}; build it with "
                         f"ModelConfig.gmn.width={k} (the largest packed kernel/position block)")
    return t if k == width else torch.nn.functional.pad(t, (0, width - k))


def check_task(cfg: ModelConfig, tasks: tuple[str, ...]) -> None:
    """Raise a clear error when a baseline does not implement ``cfg.task``."""
    if cfg.task not in tasks:
        edit = " (weight editing: 'nfn' or a graph metanetwork)" if cfg.task == "edit" else ""
        raise ValueError(f"baseline {cfg.name!r} supports tasks {list(tasks)}, not {cfg.task!r}{edit}")

