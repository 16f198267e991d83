"""Model zoos on disk: the HDF5 format, writing and reading it, and a PyG dataset of parameter graphs.

Command line: ``python -m datasets --help``.
"""

from datasets.dataset import ZooDataset, ZooLoader
from datasets.errors import LabelError, NonFiniteError, ZooError, ZooFormatError, ZooLockedError, ZooWarning
from datasets.hdf5 import FORMAT, FORMAT_VERSION, ZooReader
from datasets.splits import DEFAULT_SPLIT, SplitSpec, make_splits
from datasets.stats import NormStats, compute_stats, orbit_ids, read_stats, write_stats
from datasets.transforms import Compose, Normalize, RandomSymmetry
from datasets.writer import ZooWriter

__all__ = [
    "Compose", "DEFAULT_SPLIT", "FORMAT", "FORMAT_VERSION", "LabelError", "NonFiniteError", "NormStats", "Normalize",
    "RandomSymmetry", "SplitSpec", "ZooDataset", "ZooError", "ZooFormatError", "ZooLoader", "ZooLockedError",
    "ZooReader", "ZooWarning", "ZooWriter", "compute_stats", "make_splits", "orbit_ids", "read_stats", "write_stats",
]
