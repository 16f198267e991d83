"""Helpers of the ``python -m datasets`` command tests: run a command, check its one-line error, a factory module."""

import warnings

from datasets.cli import main

FACTORY_MODULE = "wg_robust_models"
FACTORIES = '''
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc1 = nn.Linear(4, width)
        self.fc2 = nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    return MLP()


def make_double():
    return MLP().double()


def make_sized(state_dict):
    return MLP(state_dict["fc1.weight"].shape[0])


def boom(state_dict):
    raise KeyError("fc9.weight")
'''


def cli(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``python -m datasets ARGV`` run in this process."""
    with warnings.catch_warnings():
        rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def warning_lines(err):
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def install_factories(tmp_path, monkeypatch):
    """Write the factory module into ``tmp_path`` and make it importable (and the working directory)."""
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path
