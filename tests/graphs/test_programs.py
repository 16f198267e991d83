"""Stored programs: round trip, digest, and refusal of every tampered file that could run code on load."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import pytest
import torch
from torch import nn

from graphs import UnsafeProgramError, graph_digest, load_program, program_bytes, program_input_shapes, trace_program


def _net(act: type[nn.Module] = nn.ReLU) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), act(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()


X = torch.randn(2, 1, 8, 8)


def _rewrite(data: bytes, member_suffix: str, edit) -> bytes:
    """A copy of a program archive with one member replaced by ``edit(old_bytes)``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            raw = src.read(info.filename)
            dst.writestr(info.filename, edit(raw) if info.filename.endswith(member_suffix) else raw)
    return out.getvalue()


def _edit_json(edit):
    def run(raw: bytes) -> bytes:
        tree = json.loads(raw)
        edit(tree)
        return json.dumps(tree).encode()
    return run


def test_round_trip_runs_the_same_function():
    model = _net()
    layout, program = trace_program(model, X)
    data = program_bytes(program)
    loaded = load_program(data)
    torch.testing.assert_close(loaded.module()(X), model(X), rtol=0, atol=0)
    assert program_input_shapes(loaded) == [[2, 1, 8, 8]]
    assert layout.num_params == sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())


def test_digest_names_the_function_not_the_weights():
    a, b = _net(), _net()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    assert graph_digest(program_bytes(a, X)) == graph_digest(program_bytes(b, X))
    assert graph_digest(program_bytes(a, X)) != graph_digest(program_bytes(_net(nn.Tanh), X))


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_pickled_member_with_code_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Marker.path = str(marker)
    evil = pickle.dumps(_Marker())
    data = _rewrite(program_bytes(_net(), X), "sample_inputs/model.pt", lambda raw: evil)
    with pytest.raises(UnsafeProgramError, match="pickled member 'model.pt'"):
        load_program(data)
    assert not marker.exists()
    # plain torch.export.load would have run it (it falls back to weights_only=False): the test is not vacuous
    try:
        torch.export.load(io.BytesIO(data))
    except Exception:
        pass
    assert marker.exists()


def test_target_outside_torch_ops_is_refused():
    def edit(tree):
        tree["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    data = _rewrite(program_bytes(_net(), X), "models/model.json", _edit_json(edit))
    with pytest.raises(UnsafeProgramError, match="torch.os.system"):
        load_program(data)


def test_symbolic_code_and_guards_are_refused():
    def expr(tree):
        tree["range_constraints"] = {"__import__('os').system('true')": {"min_val": 0, "max_val": 1}}
    with pytest.raises(UnsafeProgramError, match="not plain arithmetic"):
        load_program(_rewrite(program_bytes(_net(), X), "models/model.json", _edit_json(expr)))

    def guards(tree):
        tree["guards_code"] = ["import os"]
    with pytest.raises(UnsafeProgramError, match="guard code"):
        load_program(_rewrite(program_bytes(_net(), X), "models/model.json", _edit_json(guards)))


def test_non_tensor_constant_is_refused():
    def edit(tree):
        tree["config"]["c"] = {"path_name": "custom_obj_0", "use_pickle": True}
    data = _rewrite(program_bytes(_net(), X), "constants/model_constants_config.json", _edit_json(edit))
    with pytest.raises(UnsafeProgramError, match="not a plain tensor"):
        load_program(data)


def test_not_an_archive():
    with pytest.raises(UnsafeProgramError, match="not a zip file"):
        load_program(b"hello")
    with pytest.raises(UnsafeProgramError, match="not a zip file"):
        graph_digest(b"hello")
