"""``ParamGraph``: one network's parameters as a PyG graph (neurons are nodes, weights are edges)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from torch_geometric.data import Data

__all__ = ["EDGE_TYPES", "NODE_TYPES", "NodeType", "ParamGraph"]


class NodeType(IntEnum):
    """Node vocabulary.

    ``INPUT``/``OUTPUT``: neurons of the network's inputs/outputs (fixed, carry their position).
    ``HIDDEN``: neurons of a permutable group (carry no position beyond fixed coordinates such as the
    q/k/v block of a packed projection). ``FIXED``: hidden neurons that no symmetry moves (spatial,
    or touched by an op without a rule). ``PARAM``: one node per bias-like parameter tensor.
    """

    INPUT = 0
    HIDDEN = 1
    OUTPUT = 2
    FIXED = 3
    PARAM = 4


NODE_TYPES = tuple(t.name.lower() for t in NodeType)

EDGE_TYPES: tuple[str, ...] = (
    "linear", "conv", "embedding", "matrix",  # weight elements: input neuron -> output neuron
    "bias", "norm_weight", "norm_bias", "running_mean", "running_var", "vector",  # parameter node -> neuron
)
"""Edge vocabulary: ``edge_type`` indexes this tuple."""


class ParamGraph(Data):
    r"""A network's parameters as a graph whose relabelings are the network's neuron symmetries.

    Built by :func:`graphs.to_graph`; :func:`graphs.to_state_dict` inverts it exactly. Batches with
    :class:`torch_geometric.data.Batch` like any ``Data``.

    Attributes:
        x (Tensor): ``[N, K]`` features of parameter nodes whose tensor has no neuron axis
            (scalars, vectors over fixed axes); zero elsewhere.
        node_type (LongTensor): ``[N]`` :class:`NodeType` of every node.
        node_pos (LongTensor): ``[N]`` position of input/output/fixed neurons; for hidden neurons the
            index of their fixed coordinates (-1 when none); for parameter nodes the parameter index.
        edge_index (LongTensor): ``[2, E]`` source (input neuron or parameter node) and target neuron.
        edge_attr (Tensor): ``[E, K]`` weight values; a conv kernel or a flattened spatial block is
            packed into one edge, padded with zeros to ``K``. ``K`` is the layout's largest block unless
            that would waste memory (:func:`graphs.compile.choose_width`); a wider block is then split
            into parallel edges of ``K`` slots each.
        edge_mask (BoolTensor): ``[E, K]`` slots of ``edge_attr`` that hold a parameter (the rest is
            padding; a parameter that is exactly zero is still a parameter).
        x_mask (BoolTensor): ``[N, K]`` the same for ``x``.
        edge_type (LongTensor): ``[E]`` index into :data:`EDGE_TYPES`.
        edge_param (LongTensor): ``[E]`` index of the parameter (layer) an edge belongs to.
        edge_chunk (LongTensor): ``[E]`` which ``K`` slots of its block an edge holds (0, 1, ...; all 0
            when every block fits in ``K``).
        ints (LongTensor): ``[num_int]`` integer buffers (BatchNorm counters), copied exactly.
        layout (Layout): the architecture's :class:`graphs.Layout` (a Python attribute).
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "edge_index":
            return self.num_nodes
        return 0

    @property
    def width(self) -> int:
        """``K``: edge/node feature width."""
        return int(self.edge_attr.shape[-1])
