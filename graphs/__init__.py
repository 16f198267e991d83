"""Networks as parameter graphs: trace symmetries with torch.export, convert exactly both ways."""

from graphs.align import align, canonical_reference, canonicalize, interpolate_state_dicts, merge, similarity
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
from graphs.errors import (
    CheckpointError,
    LayoutMismatchError,
    UnreadParameterWarning,
    UnsafeProgramError,
    UnsupportedNetworkError,
)
from graphs.interpolate import reset_norm_stats
from graphs.layout import GroupSpec, IntBufferSpec, Layout, ParamSpec
from graphs.param_graph import EDGE_TYPES, NODE_TYPES, NodeType, ParamGraph
from graphs.probes import ProbeNet, ProbeSites, find_probe_sites, probe_features
from graphs.programs import graph_digest, load_program, program_bytes, program_input_shapes
from graphs.symmetry import (
    apply_symmetry,
    axis_permutation,
    check_symmetry,
    node_permutation,
    random_symmetry,
    symmetry_index,
)
from graphs.trace import trace, trace_program

__all__ = [
    "CheckpointError", "EDGE_TYPES", "GroupSpec", "IntBufferSpec", "Layout", "LayoutMismatchError", "NODE_TYPES",
    "NodeType", "ParamGraph", "ParamSpec", "ProbeNet", "ProbeSites", "UnreadParameterWarning", "UnsafeProgramError",
    "UnsupportedNetworkError", "align", "apply_symmetry", "axis_permutation", "canonical_reference", "canonicalize",
    "check_symmetry", "compile_layout",
    "find_probe_sites", "flatten_int_buffers", "flatten_state_dict", "graph_digest", "graph_to_vector",
    "interpolate_state_dicts", "load_checkpoint", "load_program", "merge", "node_permutation", "probe_features",
    "program_bytes", "program_input_shapes", "random_symmetry", "reset_norm_stats", "save_checkpoint", "similarity",
    "symmetry_index", "to_graph", "to_state_dict", "trace", "trace_program", "unflatten_state_dict",
    "vector_to_graph",
]
