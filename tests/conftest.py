import os
import random
import sys
import warnings

import numpy as np
import pytest
import torch

# Our import package `datasets` must win over Hugging Face's `datasets` when both are installed.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from datasets.zoo.build import build_zoo  # noqa: E402  (after ROOT is on sys.path: our datasets)
from datasets.zoo.recipes import get_recipe  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch_geometric")
# Test models are tiny: one thread is as fast, and two oversubscribe a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def cnn_zoo(tmp_path_factory):
    """A tiny runnable digits CNN zoo (12 runs, relu/tanh/gelu), built once per test module."""
    path = tmp_path_factory.mktemp("zoo") / "cnn.h5"
    build_zoo(get_recipe("digits-cnn-demo", n_runs=12), path, progress=False)
    return str(path)
