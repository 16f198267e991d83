import pytest
import torch

from graphs.__main__ import main


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
    (tmp_path / "nets.py").write_text("from torch import nn\ndef f():\n    return nn.Linear(2, 2)\n")
    assert main(["inspect", f"{tmp_path / 'nets.py'}:f"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(["inspect", f"{tmp_path / 'nets.py'}:nope", "--input-shape", "1,2"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def test_load_factory_imports_modules_and_files(tmp_path):
    from graphs.__main__ import build_from_factory, load_factory

    factory, _ = load_factory("tests.graphs.catalogue_nets:TinyResNet")  # an importable module path
    assert callable(factory)
    (tmp_path / "nets.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(3, 2)\n")
    net, inputs = build_from_factory(f"{tmp_path / 'nets.py'}:make", ["2,3"])
    assert net(*inputs).shape == (2, 2)
    with pytest.raises(ValueError, match="--input-shape"):
        build_from_factory(f"{tmp_path / 'nets.py'}:make", None)
