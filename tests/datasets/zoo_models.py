"""Tiny networks and deterministic rows shared by the datasets tests."""

import numpy as np
import torch
from torch import nn

import graphs


class MLP(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, width)
        self.fc2 = nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


MLP_INPUT = (torch.zeros(2, 4),)
CNN_INPUT = (torch.zeros(2, 1, 8, 8),)


def make_cnn(seed: int) -> SmallCNN:
    """A CNN with distinct weights, running statistics and BatchNorm counter per seed."""
    torch.manual_seed(seed)
    m = SmallCNN()
    m.bn.running_mean.normal_()
    m.bn.running_var.uniform_(0.5, 2.0)
    m.bn.num_batches_tracked.fill_(seed)
    return m.eval()


def make_mlp(seed: int, width: int = 8) -> MLP:
    torch.manual_seed(seed)
    return MLP(width)


def rows_for(layout: graphs.Layout, start: int, stop: int) -> np.ndarray:
    """Deterministic rows: model i is filled with i + offset/num_params (checkable after a crash)."""
    i = np.arange(start, stop, dtype=np.float64)[:, None]
    return (i + np.arange(layout.num_params)[None, :] / layout.num_params).astype(layout.float_dtype)
