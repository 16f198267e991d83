import pytest
import torch

from graphs.__main__ import main
from graphs.cli import build_from_factory, load_factory, parse_input_shapes, parse_shape, pick_device, run_cli


def test_inspect_a_factory_and_save_its_layout(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def mlp():\n    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))\n"
        "def example_inputs():\n    return (torch.randn(2, 4),)\n")
    assert main(["inspect", f"{tmp_path / 'nets.py'}:mlp", "--save-layout", str(tmp_path / "l.json")]) == 0
    out = capsys.readouterr().out
    assert "permutable groups, sizes [6]" in out and "fixed groups" in out
    assert main(["inspect", str(tmp_path / "l.json")]) == 0
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).state_dict(),
               tmp_path / "m.pt")
    assert main(["inspect", str(tmp_path / "m.pt"), "--model", f"{tmp_path / 'nets.py'}:mlp"]) == 0
    assert "converted to" in capsys.readouterr().out


def test_inspect_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    torch.save({"w": torch.zeros(2)}, tmp_path / "m.pt")
    assert main(["inspect", str(tmp_path / "m.pt")]) == 2
    assert "pass --model module:factory" in capsys.readouterr().err
    (tmp_path / "nets.py").write_text("from torch import nn\ndef f():\n    return nn.Sequential(nn.LayerNorm(2))\n")
    assert main(["inspect", f"{tmp_path / 'nets.py'}:f"]) == 2  # no shape given, none can be guessed
    assert "--example-input-shape" in capsys.readouterr().err
    assert main(["inspect", f"{tmp_path / 'nets.py'}:nope", "--input-shape", "1,2"]) == 2
    assert "has no callable 'nope'" in capsys.readouterr().err


def test_load_factory_imports_modules_and_files(tmp_path):
    factory, _ = load_factory("tests.graphs.catalogue_nets:TinyResNet")  # an importable module path
    assert callable(factory)
    (tmp_path / "nets.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(3, 2)\n")
    net, inputs = build_from_factory(f"{tmp_path / 'nets.py'}:make", ["2,3"])
    assert net(*inputs).shape == (2, 2)
    net, inputs = build_from_factory(f"{tmp_path / 'nets.py'}:make", None)  # guessed from the first layer
    assert [x.shape for x in inputs] == [(2, 3)]


def test_input_shapes_parse_or_name_the_problem():
    x, ids = parse_input_shapes(["1,3,8,8", "long:1,16"])
    assert x.shape == (1, 3, 8, 8) and x.dtype == torch.float32
    assert ids.shape == (1, 16) and ids.dtype == torch.long
    assert torch.equal(parse_input_shapes(["2x3"])[0], parse_input_shapes(["2,3"])[0])  # fixed seed
    assert parse_input_shapes(["2,3"], dtype=torch.float64)[0].dtype == torch.float64
    assert parse_shape("1x28x28") == (1, 28, 28)
    bad_specs = (("1,a", "malformed"), ("0,3", "malformed"), ("", "malformed"), ("complex:1,2", "unknown element"))
    for bad, match in bad_specs:
        with pytest.raises(ValueError, match=match):
            parse_input_shapes([bad], flag="--example-input-shape")


def test_device_choice_and_one_line_errors(capsys):
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="is not a device"):
        pick_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")

    def fails(argv):
        raise ValueError("bad\n  input")

    assert run_cli(fails) == 2
    assert capsys.readouterr().err == "error: bad input\n"
    assert run_cli(lambda argv: {"result": 1}) == 0 and run_cli(lambda argv: 3) == 3
