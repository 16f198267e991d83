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
    if isinstance(model_or_sd, dict):  # the common case first (a state_dict is an OrderedDict)
        return model_or_sd
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


class _Plan:
    """What converting a state_dict of one layout needs, worked out once per layout (cached on it).

    The fast path of :func:`flatten_state_dict`, :func:`to_graph` and
    :func:`graphs.batch.flatten_state_dicts`: one comparison of the state_dict's keys and shapes with
    the layout's, one ``torch.cat`` of the parameters into a vector of the layout's dtype, and a graph
    made as a shallow copy of a template holding the layout's constant tensors. Anything the fast path
    does not take (a key or shape mismatch, tensors on another device or requiring grad) goes through
    the general code, which gives the same result or the same error.
    """

    def __init__(self, layout: Layout) -> None:
        want = _key_shapes(layout)
        self.keys = tuple(want)
        self.shapes = [tuple(s) for s in want.values()]
        self.names = tuple(p.name for p in layout.params)
        self.multi_dim = tuple(len(p.shape) != 1 for p in layout.params)  # the tensors to flatten first
        self.other_shapes = [(k, s) for k, s in zip(self.keys, self.shapes, strict=True) if k not in self.names]
        self.int_names = tuple(b.name for b in layout.int_buffers)
        self.dtype = _dtype(layout.float_dtype)
        self.num_params = layout.num_params
        self.num_int = layout.num_int
        self.zero = torch.zeros(1, dtype=self.dtype)  # the padding slot of cat(vec, [0])
        self._template: ParamGraph | None = None

    def matches(self, sd: Mapping) -> bool:
        """``sd`` has exactly the layout's keys, each with its shape (what :func:`check_state_dict` checks)."""
        if len(sd) != len(self.keys):
            return False
        try:
            return [sd[k].shape for k in self.keys] == self.shapes
        except (KeyError, AttributeError, TypeError):
            return False

    def flat(self, sd: Mapping, out: torch.Tensor, pad: bool = False) -> bool:
        """Write the parameters of a matching ``sd`` into ``out``; False where the general path must do it.

        ``out`` is ``[P]``, or ``[P + 1]`` ending in 0 with ``pad``; it is unspecified after False.
        """
        try:
            parts = [sd[n].reshape(-1) if m else sd[n] for n, m in zip(self.names, self.multi_dim, strict=True)]
            if pad:
                parts.append(self.zero)
            torch.cat(parts, out=out)
        except (RuntimeError, TypeError, AttributeError):  # another device, requires grad, not a tensor
            return False
        return True

    def graph(self, c, layout: Layout, x: torch.Tensor, edge_attr: torch.Tensor, ints: torch.Tensor) -> ParamGraph:
        """A ParamGraph of ``layout`` with these features, sharing the layout's constant tensors.

        Equal to ``ParamGraph(x=x, ..., layout=layout, num_nodes=N)``: the template is built by that very
        constructor once, and each graph is its shallow copy (``Data.__copy__``, as ``copy.copy`` makes)
        whose fresh store gets the per-graph entries directly (a new copy has no cached attribute kinds,
        so this is what assigning them as attributes does, without its per-attribute lookups).
        """
        t = self._template
        if t is None:  # placeholders for the per-graph entries, so that the template holds no graph's data
            empty = torch.empty(0)
            t = self._template = _new_graph(c, layout, empty, empty, empty.long())
        g = t.__copy__()
        g._store._mapping.update(x=x, edge_attr=edge_attr, ints=ints, layout=layout)
        return g


def _plan(layout: Layout) -> _Plan:
    got = layout._cache.get("convert_plan")
    if got is None:
        got = layout._cache["convert_plan"] = _Plan(layout)
    return got


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
    plan = _plan(layout)
    if layout.params and plan.matches(sd):
        out = torch.empty(plan.num_params, dtype=plan.dtype)
        if plan.flat(sd, out):
            return out
    return _flatten_general(sd, layout, check)


def _flatten_general(sd: Mapping[str, torch.Tensor], layout: Layout, check: bool = True) -> torch.Tensor:
    """:func:`flatten_state_dict` for any state_dict: checks, then converts every tensor on its own."""
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
    ints = ints if ints is not None else torch.zeros(layout.num_int, dtype=torch.long)
    return _plan(layout).graph(c, layout, x, edge_attr, ints)


def _new_graph(c, layout: Layout, x: torch.Tensor, edge_attr: torch.Tensor, ints: torch.Tensor) -> ParamGraph:
    """A ParamGraph made by its constructor (what :meth:`_Plan.graph` copies)."""
    return ParamGraph(
        x=x, node_type=c.node_type, node_pos=c.node_pos,
        edge_index=c.edge_index, edge_attr=edge_attr, edge_type=c.edge_type,
        edge_mask=c.edge_mask, x_mask=c.x_mask,
        edge_param=c.edge_param, edge_chunk=c.edge_chunk,
        ints=ints, layout=layout, num_nodes=c.num_nodes)


def to_graph(model_or_sd, layout: Layout) -> ParamGraph:
    """Convert a module or state_dict into its :class:`ParamGraph` (see :mod:`graphs.compile`)."""
    sd = _state(model_or_sd)
    plan = _plan(layout)
    if plan.num_params and plan.matches(sd):  # fast path: one cat into cat(vec, [0]), one gather each
        ext = torch.empty(plan.num_params + 1, dtype=plan.dtype)
        if plan.flat(sd, ext, pad=True):
            c = compile_layout(layout)
            edge_attr = ext.index_select(0, c.edge_gather).view(-1, c.width)
            x = ext.index_select(0, c.node_gather).view(c.num_nodes, c.width)
            ints = flatten_int_buffers(sd, layout) if plan.int_names else torch.empty(0, dtype=torch.long)
            return plan.graph(c, layout, x, edge_attr, ints)
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
