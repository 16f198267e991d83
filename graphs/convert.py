"""Conversion between networks, flat parameter vectors and :class:`ParamGraph` (exact both ways)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from graphs.compile import compile_layout
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout
from graphs.param_graph import ParamGraph

__all__ = ["check_state_dict", "flatten_int_buffers", "flatten_state_dict", "layout_keys", "to_graph", "to_state_dict",
           "unflatten_state_dict", "vector_to_graph", "graph_to_vector"]


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _state(model_or_sd) -> Mapping[str, torch.Tensor]:
    if isinstance(model_or_sd, nn.Module):
        return model_or_sd.state_dict()
    if isinstance(model_or_sd, Mapping):
        return model_or_sd
    raise TypeError(f"expected an nn.Module or a state_dict, got {type(model_or_sd).__name__}")


def _key_shapes(layout: Layout) -> dict[str, tuple[int, ...]]:
    want = {p.name: p.shape for p in layout.params}
    want.update({a: p.shape for p in layout.params for a in p.aliases})
    want.update({b.name: b.shape for b in layout.int_buffers})
    return want


def layout_keys(layout: Layout) -> set[str]:
    """The state_dict keys a network of ``layout`` has: parameters, their aliases (tied weights), int buffers."""
    return set(_key_shapes(layout))


def check_state_dict(sd: Mapping[str, torch.Tensor], layout: Layout) -> None:
    """Raise :class:`LayoutMismatchError` naming every missing, extra or mis-shaped key."""
    want = _key_shapes(layout)
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    bad = [f"{k}: {tuple(sd[k].shape)} != {want[k]}" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
        if bad:
            parts.append(f"wrong shapes {bad[:5]}")
        raise LayoutMismatchError(
            f"state_dict does not match layout {layout.name or ''}#{layout.fingerprint}: " + "; ".join(parts)
            + ". Trace the architecture these weights belong to (graphs.trace) and use its layout.")


def flatten_state_dict(model_or_sd, layout: Layout, check: bool = True) -> torch.Tensor:
    """Concatenate the float parameters/buffers into one vector in layout order.

    Args:
        model_or_sd: A module or a state_dict with exactly the layout's keys.
        layout: The architecture's Layout.
        check: Validate keys and shapes first.

    Returns:
        ``[layout.num_params]`` tensor of dtype ``layout.float_dtype`` (exact for float16/bfloat16/float32).
    """
    sd = _state(model_or_sd)
    if check:
        check_state_dict(sd, layout)
    dtype = _dtype(layout.float_dtype)
    if not layout.params:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([sd[p.name].detach().reshape(-1).to(device="cpu", dtype=dtype) for p in layout.params])


def flatten_int_buffers(model_or_sd, layout: Layout) -> torch.Tensor:
    """Integer buffers as one int64 vector (``[layout.num_int]``)."""
    sd = _state(model_or_sd)
    if not layout.int_buffers:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([sd[b.name].detach().reshape(-1).to("cpu", torch.long) for b in layout.int_buffers])


def unflatten_state_dict(vec: torch.Tensor, layout: Layout, ints: torch.Tensor | None = None) -> dict:
    """Inverse of :func:`flatten_state_dict` (original dtypes, tied aliases restored).

    Integer buffers come from ``ints`` (zeros when not given).
    """
    if vec.dim() != 1 or vec.numel() != layout.num_params:
        raise LayoutMismatchError(f"vector has shape {tuple(vec.shape)}, layout {layout.fingerprint} needs "
                                  f"({layout.num_params},)")
    sd: dict[str, torch.Tensor] = {}
    for p in layout.params:
        t = vec[p.offset:p.offset + p.numel].reshape(p.shape).to(_dtype(p.dtype)).clone()
        sd[p.name] = t
        for a in p.aliases:
            sd[a] = t
    for b in layout.int_buffers:
        n = 1
        for s in b.shape:
            n *= s
        vals = ints[b.offset:b.offset + n] if ints is not None else torch.zeros(n, dtype=torch.long)
        sd[b.name] = vals.reshape(b.shape).to(_dtype(b.dtype)).clone()
    return sd


def vector_to_graph(vec: torch.Tensor, layout: Layout, ints: torch.Tensor | None = None) -> ParamGraph:
    """Build the graph of a flat parameter vector: one gather into the cached structure."""
    c = compile_layout(layout)
    if vec.dim() != 1 or vec.numel() != layout.num_params:
        raise LayoutMismatchError(f"vector has shape {tuple(vec.shape)}, layout {layout.fingerprint} needs "
                                  f"({layout.num_params},)")
    k = c.width
    # index_select: a plain gather, much cheaper than advanced indexing for small graphs
    if vec.numel() and c.edges_full:  # no padded edge slot: gather from vec itself, no copy of it
        edge_attr = vec.index_select(0, c.edge_gather).view(-1, k)
        x = torch.where(c.x_mask.view(-1), vec.index_select(0, c.node_gather.clamp(max=vec.numel() - 1)),
                        vec.new_zeros(())).view(c.num_nodes, k)
    else:
        ext = torch.cat([vec, vec.new_zeros(1)])
        edge_attr = ext.index_select(0, c.edge_gather).view(-1, k)
        x = ext.index_select(0, c.node_gather).view(c.num_nodes, k)
    return ParamGraph(
        x=x, node_type=c.node_type, node_pos=c.node_pos,
        edge_index=c.edge_index, edge_attr=edge_attr, edge_type=c.edge_type,
        edge_mask=c.edge_mask, x_mask=c.x_mask,
        edge_param=c.edge_param, edge_chunk=c.edge_chunk,
        ints=ints if ints is not None else torch.zeros(layout.num_int, dtype=torch.long),
        layout=layout, num_nodes=c.num_nodes)


def to_graph(model_or_sd, layout: Layout) -> ParamGraph:
    """Convert a module or state_dict into its :class:`ParamGraph` (see :mod:`graphs.compile`)."""
    sd = _state(model_or_sd)
    return vector_to_graph(flatten_state_dict(sd, layout), layout, flatten_int_buffers(sd, layout))


def graph_to_vector(graph: ParamGraph) -> torch.Tensor:
    """The flat parameter vector held by ``graph`` (inverse of :func:`vector_to_graph`)."""
    layout = _layout_of(graph)
    c = compile_layout(layout)
    if graph.edge_attr.shape != (c.edge_index.shape[1], c.width) or graph.x.shape != (c.num_nodes, c.width):
        raise LayoutMismatchError(f"graph features {tuple(graph.edge_attr.shape)}/{tuple(graph.x.shape)} do not "
                                  f"match layout {layout.fingerprint}; was it built from another layout?")
    feats = torch.cat([graph.edge_attr.reshape(-1), graph.x.reshape(-1)])
    return feats.index_select(0, c.inverse.to(feats.device))


def to_state_dict(graph: ParamGraph) -> dict:
    """Exact inverse of :func:`to_graph`: same keys, shapes, dtypes and values."""
    layout = _layout_of(graph)
    return unflatten_state_dict(graph_to_vector(graph), layout, graph.ints)


def _layout_of(graph: ParamGraph) -> Layout:
    layout = getattr(graph, "layout", None)
    if isinstance(layout, (list, tuple)):
        raise ValueError("to_state_dict() takes one graph, not a batch: use batch.to_data_list() first")
    if not isinstance(layout, Layout):
        raise ValueError("graph has no layout attribute; build it with graphs.to_graph(model, layout)")
    return layout
