"""``ChainSpec``: the weight space of a plain MLP/CNN chain, read from a Layout's axis labels.

NFN layers (:mod:`metanets.baselines.nfn`) need a network that is a chain of dense/conv layers
``W_1, b_1, ..., W_L, b_L``: each layer reads exactly the neuron space the previous layer wrote.
This module finds that chain in a :class:`graphs.Layout` (or says precisely why there is none) and
computes, once, the gather indices that turn a flat parameter row into the per-layer tensors

* ``W_i``: ``[n_i, n_{i-1}, k_i]`` (output neuron, input neuron, filter slot), where ``k_i`` collects
  every fixed spatial slot of the weight (conv kernel offsets, flattened positions of a
  ``Flatten -> Linear``), in the compiled graph's slot order;
* ``b_i``: ``[n_i]`` (optional).

NFN layers treat every neuron space of the chain as permutable. A hidden space that the Layout
marks fixed (touched by an op without a symmetry rule) is therefore given more symmetry than it
has: the model stays invariant to the true symmetries, but cannot tell those neurons apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from graphs.compile import axis_maps
from graphs.layout import Layout, ParamSpec

__all__ = ["ChainLayer", "ChainSpec"]

_WEIGHT_ROLES = ("linear", "conv")


@dataclass(frozen=True)
class ChainLayer:
    """One layer of a chain.

    Attributes:
        weight: ``state_dict`` name of the weight.
        bias: Name of the bias, or None.
        n_out: ``n_i``, neurons written.
        n_in: ``n_{i-1}``, neurons read.
        k: Filter slots per (output, input) pair (1 for a dense layer, 9 for a 3x3 conv).
        weight_index: ``[n_out, n_in, k]`` flat-vector index of every weight element.
        bias_index: ``[n_out]`` flat-vector index of the bias, or None.
    """

    weight: str
    bias: str | None
    n_out: int
    n_in: int
    k: int
    weight_index: torch.Tensor
    bias_index: torch.Tensor | None


@dataclass(frozen=True)
class ChainSpec:
    """The layers of an MLP/CNN chain in execution order, and how they pack the flat vector.

    Attributes:
        layers: The chain, first layer (reading the network input) first.
        num_params: Length of the flat vector.
        pack_index: ``[num_params]``: ``rows[:, pack_index]`` lists every layer's weight
            (``[n_out, n_in, k]`` row-major) in chain order, then every bias.
        unpack_index: ``[num_params]``, the inverse permutation of ``pack_index``.
    """

    layers: tuple[ChainLayer, ...]
    num_params: int
    pack_index: torch.Tensor
    unpack_index: torch.Tensor

    @classmethod
    def from_layout(cls, layout: Layout) -> ChainSpec:
        """Find the chain in ``layout``.

        Raises:
            ValueError: The layout is not a plain chain of linear/conv layers with optional biases
                (residual connections, normalization or other parameters, grouped convolutions,
                concatenated or shared neuron groups); the message names the parameter and why.
        """
        weights = [p for p in layout.params if p.role in _WEIGHT_ROLES]
        if not weights:
            _fail("the layout has no linear or convolution weight")
        info = {p.name: _weight_axes(layout, p) for p in weights}  # name -> (in_space, out_space, index)
        readers: dict = {}
        writers: dict = {}
        for p in weights:
            in_sp, out_sp, _ = info[p.name]
            if in_sp in readers:
                _fail(f"layer '{p.name}' reads a neuron group shared with '{readers[in_sp]}' (a residual or "
                      f"branching connection)")
            if out_sp in writers:
                _fail(f"layer '{p.name}' writes a neuron group also written by '{writers[out_sp]}' (a residual "
                      f"connection or a sum of branches)")
            readers[in_sp], writers[out_sp] = p.name, p.name
        starts = [p.name for p in weights if info[p.name][0] not in writers]
        if len(starts) != 1:
            _fail(f"expected one layer reading the network input, found {starts or 'none (a cycle)'}")
        order = [starts[0]]
        while info[order[-1]][1] in readers:
            order.append(readers[info[order[-1]][1]])
            if len(order) > len(weights):
                _fail("the layers form a cycle")
        if len(order) != len(weights):
            _fail(f"layers {sorted(set(info) - set(order))} are not on the chain that starts at '{order[0]}'")
        biases = _biases(layout, {info[n][1]: n for n in order}, {n: info[n][2].shape[0] for n in order})
        layers = []
        for name in order:
            _, _, w_idx = info[name]
            b = biases.get(name)
            layers.append(ChainLayer(name, None if b is None else b.name, w_idx.shape[0], w_idx.shape[1],
                                     w_idx.shape[2], torch.from_numpy(w_idx),
                                     None if b is None else torch.arange(b.offset, b.offset + b.numel)))
        pack = torch.cat([lay.weight_index.reshape(-1) for lay in layers]
                         + [lay.bias_index for lay in layers if lay.bias_index is not None])
        n = layout.num_params
        if pack.numel() != n or not torch.equal(torch.sort(pack).values, torch.arange(n)):
            _fail("weights and biases do not cover the flat vector exactly once")
        return cls(tuple(layers), n, pack, torch.argsort(pack))

    def pack(self, rows: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Per-layer tensors of flat rows.

        Args:
            rows: ``[B, num_params]``.

        Returns:
            ``(weights, biases)``: ``W_i [B, k_i, n_i, n_{i-1}]`` (filter slots as channels) and
            ``b_i [B, 1, n_i]`` (None for a layer without bias).
        """
        b = rows.shape[0]
        dense = rows[:, self.pack_index.to(rows.device)]
        ws, bs, off = [], [], 0
        for lay in self.layers:
            size = lay.n_out * lay.n_in * lay.k
            ws.append(dense[:, off:off + size].reshape(b, lay.n_out, lay.n_in, lay.k).permute(0, 3, 1, 2))
            off += size
        for lay in self.layers:
            if lay.bias_index is None:
                bs.append(None)
                continue
            bs.append(dense[:, off:off + lay.n_out].reshape(b, 1, lay.n_out))
            off += lay.n_out
        return ws, bs

    def unpack(self, weights: list[torch.Tensor], biases: list[torch.Tensor | None]) -> torch.Tensor:
        """Inverse of :meth:`pack`: ``W_i [B, k_i, n_i, n_{i-1}]``, ``b_i [B, 1, n_i]`` -> rows ``[B, num_params]``."""
        b = weights[0].shape[0]
        parts = [w.permute(0, 2, 3, 1).reshape(b, -1) for w in weights]
        parts += [t.reshape(b, -1) for t in biases if t is not None]
        return torch.cat(parts, dim=1)[:, self.unpack_index.to(weights[0].device)]


def _fail(why: str) -> None:
    raise ValueError(f"NFN needs a plain MLP/CNN chain; {why}. Use a graph metanetwork (--model gmn) for this "
                     f"architecture.")


def _weight_axes(layout: Layout, p: ParamSpec) -> tuple:
    """``(in_space, out_space, index [n_out, n_in, k])`` of a linear/conv weight."""
    if p.group_input is not None:
        _fail(f"'{p.name}' is a grouped convolution")
    maps = [axis_maps(layout, lab) for lab in p.axes]
    node_axes = [ax for ax, m in enumerate(maps) if any(key is not None for key in m[0])]
    if len(node_axes) != 2:
        _fail(f"weight '{p.name}' has {len(node_axes)} neuron axes, not 2 (input and output)")
    i_ax, o_ax = p.direction if p.direction and set(p.direction) == set(node_axes) else (node_axes[1], node_axes[0])
    spaces = []
    for ax in (i_ax, o_ax):
        keys = set(maps[ax][0])
        if len(keys) != 1:
            _fail(f"axis {ax} of '{p.name}' concatenates several neuron groups")
        spaces.append(keys.pop())
    nd = len(p.shape)

    def grid(values: np.ndarray, ax: int) -> np.ndarray:
        shape = [1] * nd
        shape[ax] = p.shape[ax]
        return np.broadcast_to(values.reshape(shape), p.shape)

    slot = np.zeros(p.shape, np.int64)
    k = 1
    for ax, (_keys, _units, slots, vlen) in enumerate(maps):
        slot = slot * vlen + grid(slots, ax)
        k *= vlen
    u_out, u_in = grid(maps[o_ax][1], o_ax), grid(maps[i_ax][1], i_ax)
    n_out, n_in = int(u_out.max()) + 1, int(u_in.max()) + 1
    index = np.full((n_out, n_in, k), -1, np.int64)
    index[u_out, u_in, slot] = p.offset + np.arange(p.numel).reshape(p.shape)
    if (index < 0).any() or index.size != p.numel:
        _fail(f"weight '{p.name}' does not factor into (output neuron, input neuron, filter slot)")
    return spaces[0], spaces[1], index


def _biases(layout: Layout, writer_of: dict, n_out: dict[str, int]) -> dict[str, ParamSpec]:
    """Map each layer (weight name) to its bias; anything that is not a weight or a bias is an error.

    ``writer_of`` maps an output neuron space to its layer, ``n_out`` a layer to its output size.
    """
    out: dict[str, ParamSpec] = {}
    for p in layout.params:
        if p.role in _WEIGHT_ROLES:
            continue
        if p.role != "bias" or len(p.shape) != 1:
            _fail(f"parameter '{p.name}' (role {p.role}) is not a weight or bias of a linear/conv layer "
                  f"(normalization layers, embeddings and other parameters are not supported)")
        keys, units, _slots, vlen = axis_maps(layout, p.axes[0])
        layer = writer_of.get(keys[0]) if len(set(keys)) == 1 and vlen == 1 else None
        if layer is None and p.axes[0] == ("u",):  # a size-1 axis is unlabelled: pair by module name
            twin = p.name[:-len("bias")] + "weight" if p.name.endswith("bias") else None
            layer = twin if twin in n_out and n_out[twin] == 1 else None
        if layer is None:
            _fail(f"bias '{p.name}' is not over the output neurons of a linear/conv layer")
        if layer in out:
            _fail(f"layer '{layer}' has two biases, '{out[layer].name}' and '{p.name}'")
        if not np.array_equal(units, np.arange(p.numel)):
            _fail(f"bias '{p.name}' is not in neuron order")
        out[layer] = p
    return out
