"""Fixtures of the datasets tests: layouts traced once per session and a small labelled zoo."""

import pytest
from zoo_models import CNN_INPUT, MLP, MLP_INPUT, SmallCNN, make_cnn

import graphs
from datasets import ZooWriter


@pytest.fixture(scope="session")
def mlp_layout() -> graphs.Layout:
    return graphs.trace(MLP(), MLP_INPUT)


@pytest.fixture(scope="session")
def cnn_layout() -> graphs.Layout:
    return graphs.trace(SmallCNN(), CNN_INPUT)


@pytest.fixture
def cnn_zoo(tmp_path, cnn_layout):
    """A 20-model CNN zoo with float, int and str labels; returns (path, models)."""
    path = tmp_path / "cnn.h5"
    models = [make_cnn(i) for i in range(20)]
    with ZooWriter(path) as w:
        for i, m in enumerate(models):
            w.add(m, cnn_layout, labels={"acc": 0.5 + i / 100, "epoch": i % 4, "run": i // 4, "source": f"m{i}.pt"})
    return path, models
