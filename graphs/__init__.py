"""Networks as parameter graphs: trace symmetries with torch.export, convert exactly both ways."""

from graphs.checkpoints import load_checkpoint, save_checkpoint
from graphs.compile import compile_layout
from graphs.convert import (
    flatten_int_buffers,
    flatten_state_dict,
    graph_to_vector,
    to_graph,
    to_state_dict,
    unflatten_state_dict,
    vector_to_graph,
)
from graphs.errors import CheckpointError, LayoutMismatchError, UnsupportedNetworkError
from graphs.layout import GroupSpec, IntBufferSpec, Layout, ParamSpec
from graphs.param_graph import EDGE_TYPES, NODE_TYPES, NodeType, ParamGraph
from graphs.probes import ProbeNet, ProbeSites, find_probe_sites, probe_features
from graphs.symmetry import apply_symmetry, axis_permutation, node_permutation, random_symmetry, symmetry_index
from graphs.trace import trace

__all__ = [
    "CheckpointError", "EDGE_TYPES", "GroupSpec", "IntBufferSpec", "Layout", "LayoutMismatchError", "NODE_TYPES",
    "NodeType", "ParamGraph", "ParamSpec", "ProbeNet", "ProbeSites", "UnsupportedNetworkError", "apply_symmetry",
    "axis_permutation", "compile_layout", "find_probe_sites", "flatten_int_buffers", "flatten_state_dict",
    "graph_to_vector", "load_checkpoint", "node_permutation", "probe_features", "random_symmetry", "save_checkpoint",
    "symmetry_index", "to_graph", "to_state_dict", "trace", "unflatten_state_dict", "vector_to_graph",
]
