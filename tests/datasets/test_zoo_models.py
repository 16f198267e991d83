"""The model families of the zoo builders: shapes, published sizes, traceability, initialization."""

import pytest
import torch

import graphs
from datasets.zoo.inr import make_coordinates
from datasets.zoo.models import INITS, ModelSpec, Siren, SmallCNN, build_model, init_weights
from tests.datasets.importer_fixtures import DWSNetsINR


def test_small_cnn_is_the_small_cnn_zoo_network():
    m = SmallCNN(1, 10, width=16, depth=3, stride=2, padding=0)
    assert sum(p.numel() for p in m.parameters()) == 4970  # as published by Unterthiner et al.
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("spec", [
    ModelSpec("mlp", 1, (8, 8), 10, width=12, depth=2, dropout=0.1),
    ModelSpec("cnn", 1, (8, 8), 10, width=6, depth=3, activation="gelu"),
    ModelSpec("cnn", 1, (40,), 10, width=6, depth=2),
    ModelSpec("resnet", 3, (8, 8), 5, width=4, depth=2),
    ModelSpec("resnet", 1, (8, 8), 10, width=4, depth=1, norm=False),
])
def test_families_run_trace_and_round_trip(spec):
    torch.manual_seed(0)
    m = build_model(spec)
    assert m(spec.example_input.repeat(3, *[1] * (spec.example_input.ndim - 1))).shape == (3, spec.num_classes)
    layout = graphs.trace(m, spec.example_input)
    sd = m.state_dict()
    back = graphs.unflatten_state_dict(graphs.flatten_state_dict(sd, layout), layout,
                                       graphs.flatten_int_buffers(sd, layout))
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    assert layout.num_permutable_neurons() > 0


@pytest.mark.parametrize("scheme", INITS)
def test_init_schemes_are_seeded(scheme):
    spec = ModelSpec("cnn", 1, (8, 8), 10, width=4, depth=2)
    sds = []
    for _ in range(2):
        torch.manual_seed(3)
        sds.append(init_weights(build_model(spec), scheme, std=0.1).state_dict())
    assert all(torch.equal(sds[0][k], sds[1][k]) for k in sds[0])
    if scheme != "default":
        assert torch.count_nonzero(sds[0]["convs.0.bias"]) == 0


def test_siren_matches_the_dwsnets_inr():
    ref = DWSNetsINR()
    ours = Siren(2, 32, 3, 1)
    ours.load_state_dict(ref.state_dict())  # same keys and shapes
    coords = make_coordinates(5, 7)
    assert torch.equal(ours(coords), ref(coords))
    # DWSNets make_coordinates: x runs along a row (columns), y down the rows, row-major
    torch.testing.assert_close(coords[[1, 7]], torch.tensor([[-1 + 2 / 6, -1.0], [-1.0, -1 + 2 / 4]]))


def test_bad_names_say_what_exists():
    with pytest.raises(ValueError, match="choose one of"):
        build_model(ModelSpec("cnn", 1, (8, 8), 10, activation="swishy"))
    with pytest.raises(ValueError, match="'mlp', 'cnn' or 'resnet'"):
        build_model(ModelSpec("vit", 1, (8, 8), 10))
