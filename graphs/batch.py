"""Batched conversion: many networks of one Layout at once (zoo conversion and data loading)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch_geometric.data import Batch

from graphs.compile import compile_layout
from graphs.convert import _plan, check_state_dict
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout
from graphs.param_graph import ParamGraph

__all__ = ["batch_to_rows", "flatten_state_dicts", "gather_features", "rows_to_batch"]


def flatten_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]], layout: Layout,
                        check: bool = True) -> torch.Tensor:
    """Stack the flat vectors of many state_dicts: ``[N, layout.num_params]``, one copy per tensor name.

    When every state_dict has exactly the layout's keys and shapes (the common case), each name's
    tensors are stacked as they are and copied into their columns; otherwise (or if that cannot be
    done: tensors on another device, requiring grad) the general path checks and converts every
    tensor, with the same result or the same error.
    """
    dtype = getattr(torch, layout.float_dtype)
    n = len(state_dicts)
    out = torch.empty(n, layout.num_params, dtype=dtype)
    if n and layout.params and _stack_rows(state_dicts, layout, out):
        return out
    return _rows_general(state_dicts, layout, check, out)


def _rows_general(state_dicts: Sequence[Mapping[str, torch.Tensor]], layout: Layout, check: bool,
                  out: torch.Tensor) -> torch.Tensor:
    """:func:`flatten_state_dicts` for any state_dicts: checks each, then converts every tensor on its own."""
    if check:
        for sd in state_dicts:
            check_state_dict(sd, layout)
    for p in layout.params:
        cols = out[:, p.offset:p.offset + p.numel]
        cols.copy_(torch.stack([sd[p.name].detach().reshape(-1).cpu() for sd in state_dicts]))
    return out


def _stack_rows(state_dicts: Sequence[Mapping[str, torch.Tensor]], layout: Layout, out: torch.Tensor) -> bool:
    """The fast path of :func:`flatten_state_dicts`: False (``out`` unspecified) where it does not apply."""
    plan = _plan(layout)
    nkeys, n = len(plan.keys), len(state_dicts)
    if any(len(sd) != nkeys for sd in state_dicts):
        return False
    try:
        for key, shape in plan.other_shapes:  # aliases, int buffers: shapes only
            if any(sd[key].shape != shape for sd in state_dicts):
                return False
        for p in layout.params:  # stacking checks that a name has one shape in every state_dict
            block = torch.stack([sd[p.name] for sd in state_dicts])
            if block.shape[1:] != p.shape:
                return False
            out[:, p.offset:p.offset + p.numel].copy_(block.view(n, p.numel))
    except (KeyError, AttributeError, TypeError, RuntimeError):  # missing key, not tensors, devices, grad
        return False
    return True


def gather_features(rows: torch.Tensor, layout: Layout, width: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Node and edge features of flat parameter rows, one gather each (the inverse of :func:`batch_to_rows`).

    Args:
        rows: ``[B, num_params]``.
        layout: Their layout.
        width: Feature width of the result (``>= K``, zero-padded); the layout's ``K`` by default.

    Returns:
        ``(x [B * N, width], edge_attr [B * E, width])``.
    """
    c = compile_layout(layout)
    b = rows.shape[0]
    ext = torch.cat([rows, rows.new_zeros(b, 1)], 1)  # index num_params is the zero padding
    # index_select rather than ext[:, idx]: a plain gather, several times cheaper for small graphs
    x = ext.index_select(1, c.node_gather.to(rows.device)).reshape(b * c.num_nodes, c.width)
    edge_attr = ext.index_select(1, c.edge_gather.to(rows.device)).reshape(-1, c.width)
    if width is not None and width > c.width:
        x = torch.nn.functional.pad(x, (0, width - c.width))
        edge_attr = torch.nn.functional.pad(edge_attr, (0, width - c.width))
    return x, edge_attr


def rows_to_batch(rows: torch.Tensor, layout: Layout, ints: torch.Tensor | None = None) -> Batch:
    """A PyG ``Batch`` of the graphs of ``rows [B, num_params]`` built with one gather (no per-graph work).

    Equivalent to ``Batch.from_data_list([vector_to_graph(r, layout) for r in rows])``.
    """
    if rows.dim() != 2 or rows.shape[1] != layout.num_params:
        raise LayoutMismatchError(f"rows have shape {tuple(rows.shape)}, layout {layout.fingerprint} needs "
                                  f"(B, {layout.num_params})")
    c = compile_layout(layout)
    b, n, e = rows.shape[0], c.num_nodes, c.edge_index.shape[1]
    dev = rows.device
    offsets = torch.arange(b, device=dev) * n
    edge_index = (c.edge_index.to(dev)[:, None, :] + offsets[None, :, None]).reshape(2, -1)
    x, edge_attr = gather_features(rows, layout)
    batch = Batch(
        _base_cls=ParamGraph,  # to_data_list() yields ParamGraphs
        x=x, node_type=c.node_type.to(dev).repeat(b),
        node_pos=c.node_pos.to(dev).repeat(b), edge_index=edge_index,
        edge_attr=edge_attr, edge_type=c.edge_type.to(dev).repeat(b),
        edge_mask=c.edge_mask.to(dev).repeat(b, 1), x_mask=c.x_mask.to(dev).repeat(b, 1),
        edge_param=c.edge_param.to(dev).repeat(b), edge_chunk=c.edge_chunk.to(dev).repeat(b),
        ints=(ints.reshape(-1) if ints is not None else torch.zeros(b * layout.num_int, dtype=torch.long)),
        batch=torch.arange(b, device=dev).repeat_interleave(n), ptr=torch.arange(b + 1, device=dev) * n)
    batch._num_graphs = b
    batch.layout = [layout] * b
    # what Batch.from_data_list records, so that to_data_list() and get_example() work
    steps = torch.arange(b + 1)
    node_keys, edge_keys = ("x", "node_type", "node_pos", "x_mask"), ("edge_index", "edge_attr", "edge_type",
                                                                       "edge_param", "edge_chunk", "edge_mask")
    batch._slice_dict = {**{key: steps * n for key in node_keys}, **{key: steps * e for key in edge_keys},
                         "ints": steps * layout.num_int, "layout": steps}
    batch._inc_dict = {key: torch.zeros(b, dtype=torch.long) for key in batch._slice_dict}
    batch._inc_dict["edge_index"] = steps[:-1] * n
    return batch


def batch_to_rows(batch: Batch, layout: Layout) -> torch.Tensor:
    """Flat parameter rows ``[B, num_params]`` of a batch of graphs of one layout (differentiable).

    The inverse of :func:`rows_to_batch`; features wider than the layout's (zero padding added to
    batch several architectures) are cropped.
    """
    c = compile_layout(layout)
    b, k, n, e = batch.num_graphs, c.width, c.num_nodes, c.edge_index.shape[1]
    if batch.edge_attr.shape[0] != b * e or batch.x.shape[0] != b * n:
        raise LayoutMismatchError(f"batch of {b} graphs has {batch.edge_attr.shape[0]} edges and {batch.x.shape[0]} "
                                  f"nodes; layout {layout.fingerprint} needs {e} and {n} per graph")
    feats = torch.cat([batch.edge_attr[:, :k].reshape(b, e * k), batch.x[:, :k].reshape(b, n * k)], dim=1)
    return feats[:, c.inverse.to(feats.device)]
