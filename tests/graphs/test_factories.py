"""Factories that fail, example inputs guessed from the first layer, one flag spelling, wrapped checkpoints."""

import pytest
import torch
from torch import nn

import graphs
from graphs.__main__ import main
from graphs.checkpoints import strip_wrapper_prefix
from graphs.cli import build_from_factory, call_factory, load_factory
from graphs.example_inputs import infer_example_inputs

NETS = '''
import torch
from torch import nn


def raises():
    raise RuntimeError("out of widths")


def returns_none():
    return None


def needs_width(width):
    return nn.Linear(4, width)


def mlp():
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def lenet():  # flattens 16 x 5 x 5 features: runs on 32 x 32 inputs only
    return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))


def mnist_cnn():  # 28 x 28 inputs only
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


def conv1d():
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, ids):
        return self.head(self.emb(ids).mean(1))


def tokens():
    return Tokens()


def norm_first():
    return nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2))


def mismatched():
    return nn.Sequential(nn.Linear(4, 6), nn.Linear(5, 2))
'''


@pytest.fixture
def nets(tmp_path):
    (tmp_path / "nets.py").write_text(NETS)
    (tmp_path / "broken.py").write_text("def make(:\n    pass\n")
    (tmp_path / "explodes.py").write_text("import torch\nraise ImportError('no such backend')\n")
    return tmp_path


def one_line_error(capsys, argv, *fragments):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def test_failing_factories_are_one_line_through_the_cli(nets, capsys):
    f = nets / "nets.py"
    one_line_error(capsys, ["inspect", f"{f}:raises"], f"the factory {f}:raises raised RuntimeError: out of widths",
                   "nets.py:7", "fix the factory")
    one_line_error(capsys, ["inspect", f"{f}:returns_none"], "returned NoneType, not an nn.Module",
                   "make it return the network")
    one_line_error(capsys, ["inspect", f"{f}:needs_width"], "requires the argument(s) width", "called with no argument",
                   "wrap it")
    one_line_error(capsys, ["inspect", f"{nets / 'broken.py'}:make"], "cannot load the factory file",
                   "SyntaxError", "broken.py:1", "fix the file")
    one_line_error(capsys, ["inspect", f"{nets / 'explodes.py'}:make"], "cannot load the factory file",
                   "ImportError: no such backend")


def test_factory_errors_of_the_python_api(nets):
    with pytest.raises(ValueError, match="needs_width requires the argument"):
        build_from_factory(f"{nets / 'nets.py'}:needs_width", ["2,4"])
    factory, _ = load_factory(f"{nets / 'nets.py'}:needs_width")
    assert isinstance(call_factory(factory, "spec", 3), nn.Linear)  # given its argument, it works
    with pytest.raises(ValueError, match="raised RuntimeError"):
        call_factory(load_factory(f"{nets / 'nets.py'}:raises")[0], "spec")


@pytest.mark.parametrize("name, shape, dtype", [
    ("mlp", (2, 4), torch.float32),
    ("lenet", (2, 3, 32, 32), torch.float32),
    ("mnist_cnn", (2, 1, 28, 28), torch.float32),
    ("conv1d", (2, 2, 32), torch.float32),
    ("tokens", (2, 16), torch.long),
])
def test_example_inputs_are_guessed_from_the_first_layer(nets, name, shape, dtype):
    model, inputs = build_from_factory(f"{nets / 'nets.py'}:{name}", None)
    assert [tuple(x.shape) for x in inputs] == [shape] and inputs[0].dtype == dtype
    model.train()
    layout = graphs.trace(model, inputs)  # the guess traces
    assert model.training  # and the module's mode is left as it was
    assert layout.num_params == sum(p.numel() for p in model.parameters())
    assert infer_example_inputs(model.double())[0].dtype == (torch.float64 if dtype.is_floating_point else dtype)


def test_unguessable_inputs_name_the_flag(nets, capsys):
    one_line_error(capsys, ["inspect", f"{nets / 'nets.py'}:norm_first"], "first layer is LayerNorm",
                   "--example-input-shape")
    one_line_error(capsys, ["inspect", f"{nets / 'nets.py'}:mismatched"], "first layer Linear", "do not run",
                   "--example-input-shape")
    with pytest.raises(ValueError, match="no layer with parameters"):
        infer_example_inputs(nn.ReLU())


def test_both_spellings_of_the_example_input_flag(nets, capsys):
    f = nets / "nets.py"
    for flag in ("--input-shape", "--example-input-shape"):
        assert main(["inspect", f"{f}:mlp", flag, "3,4"]) == 0
        assert "permutable groups, sizes [6]" in capsys.readouterr().out
    one_line_error(capsys, ["inspect", f"{f}:mlp", "--input-shape", "3,a"], "malformed")


def test_save_layout_refuses_an_existing_file_unless_overwrite(nets, capsys):
    out = nets / "layout.json"
    assert main(["inspect", f"{nets / 'nets.py'}:mlp", "--save-layout", str(out)]) == 0
    first = out.read_text()
    out.write_text("keep me")
    one_line_error(capsys, ["inspect", f"{nets / 'nets.py'}:mlp", "--save-layout", out], "already exists",
                   "--overwrite")
    assert out.read_text() == "keep me"
    assert main(["inspect", f"{nets / 'nets.py'}:mlp", "--save-layout", str(out), "--overwrite"]) == 0
    assert out.read_text() == first
    one_line_error(capsys, ["inspect", f"{nets / 'nets.py'}:mlp", "--save-layout", nets / "no" / "l.json"],
                   "does not exist", "mkdir")


def test_wrapper_prefixes_are_stripped_only_when_every_key_has_them():
    sd = {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}
    ddp = {f"module.{k}": v for k, v in sd.items()}
    assert strip_wrapper_prefix(ddp) == (sd, "module.")
    assert strip_wrapper_prefix(ddp, set(sd)) == (sd, "module.")
    compiled = {f"module._orig_mod.{k}": v for k, v in sd.items()}
    assert strip_wrapper_prefix(compiled, set(sd)) == (sd, "module._orig_mod.")
    assert strip_wrapper_prefix(ddp, set(ddp)) == (ddp, "")  # a model whose submodule is called "module"
    assert strip_wrapper_prefix(ddp, {"other.weight"}) == (ddp, "")  # stripping would not make them match
    mixed = {**ddp, "head.weight": torch.zeros(1)}
    assert strip_wrapper_prefix(mixed) == (mixed, "")


def test_inspect_reads_a_ddp_checkpoint(nets, capsys):
    sd = load_factory(f"{nets / 'nets.py'}:mlp")[0]().state_dict()
    torch.save({f"module.{k}": v for k, v in sd.items()}, nets / "ddp.pt")
    assert main(["inspect", str(nets / "ddp.pt"), "--model", f"{nets / 'nets.py'}:mlp"]) == 0
    assert "converted to" in capsys.readouterr().out
