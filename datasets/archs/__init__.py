"""Architecture populations for hypernetworks: a DeepNets-1M-style space, its sampler, and its file format.

Command line: ``python -m datasets archs N OUT.h5`` (see :mod:`datasets.archs.cli`).
"""

from datasets.archs.build import build_module
from datasets.archs.cli import make_archs, trace_all
from datasets.archs.sampler import (
    DEEP_DEPTHS,
    DENSE_NODES,
    ID_DEPTHS,
    ID_NODES,
    ID_WIDTHS,
    KINDS,
    OOD_KINDS,
    WIDE_WIDTHS,
    param_cap,
    sample_archs,
    sample_spec,
)
from datasets.archs.space import CELL_OPS, FAMILIES, NORMS, ArchSpec
from datasets.archs.store import ARCHS_FORMAT, ARCHS_FORMAT_VERSION, ArchsReader, write_archs

__all__ = [
    "ARCHS_FORMAT", "ARCHS_FORMAT_VERSION", "ArchSpec", "ArchsReader", "CELL_OPS", "DEEP_DEPTHS", "DENSE_NODES",
    "FAMILIES", "ID_DEPTHS", "ID_NODES", "ID_WIDTHS", "KINDS", "NORMS", "OOD_KINDS", "WIDE_WIDTHS", "build_module",
    "make_archs", "param_cap", "sample_archs", "sample_spec", "trace_all", "write_archs",
]
