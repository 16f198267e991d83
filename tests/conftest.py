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

warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch_geometric")
# Test models are tiny: one thread is as fast, and two oversubscribe a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
