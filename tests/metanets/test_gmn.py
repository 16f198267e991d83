import pytest
import torch
from torch import nn

import graphs
from graphs.demo import example_networks
from metanets import ModelConfig, build_model
from tests.equivariance import assert_editor_equivariant, assert_model_invariant, graph_batch


def zoo(name: str, n: int = 3):
    model, inputs = example_networks()[name]
    layout = graphs.trace(model, inputs)
    vecs = []
    for i in range(n):
        net, _ = example_networks()[name]
        torch.manual_seed(i)  # after construction: example_networks() seeds itself
        for p in net.parameters():
            nn.init.normal_(p, std=0.5)
        vecs.append(graphs.flatten_state_dict(net, layout))
    return layout, vecs


def make(name, task, layout, out_dim=2):
    width = graphs.compile_layout(layout).width
    cfg = ModelConfig(name=name, task=task, out_dim=out_dim, num_norm_keys=len(layout.params), normalize_by="param")
    cfg.gmn.hidden, cfg.gmn.layers, cfg.gmn.width, cfg.gmn.max_layers = 16, 2, width, len(layout.params)
    torch.manual_seed(0)
    model = build_model(cfg)
    for p in model.parameters():  # break the identity-init of edit heads so the test is not trivial
        if p.dim() and p.abs().sum() == 0:
            nn.init.normal_(p, std=0.1)
    return model


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "transformer"])
@pytest.mark.parametrize("name", ["gmn", "pna", "transformer"])
def test_predictor_is_invariant_and_sensitive(name, arch):
    layout, vecs = zoo(arch)
    assert_model_invariant(make(name, "predict", layout), layout, vecs)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
def test_predictor_with_statistics_readout_is_invariant_and_sensitive(arch):
    layout, vecs = zoo(arch)
    width = graphs.compile_layout(layout).width
    cfg = ModelConfig(name="gmn", out_dim=2, num_norm_keys=len(layout.params), normalize_by="param",
                      layout_json=layout.to_json())
    cfg.gmn.hidden, cfg.gmn.layers, cfg.gmn.width, cfg.gmn.readout_stats = 16, 2, width, True
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.model.stats is not None
    assert_model_invariant(model, layout, vecs)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("name", ["gmn", "pna", "transformer"])
def test_editor_is_equivariant_and_sensitive(name, arch):
    layout, vecs = zoo(arch)
    out = assert_editor_equivariant(make(name, "edit", layout), layout, vecs)
    assert not torch.allclose(out[0], vecs[0].double())  # the edit does something


def test_normalizer_fit_standardizes_each_parameter():
    layout, vecs = zoo("cnn", 6)
    model = make("gmn", "predict", layout)
    batch = graph_batch(vecs, layout, torch.float32)
    model.normalizer.fit([batch])
    out = model.normalizer(batch)
    for p in range(len(layout.params)):
        vals = out.edge_attr[out.edge_param == p]
        vals = vals[batch.edge_mask[batch.edge_param == p]]
        assert abs(float(vals.mean())) < 1e-4 and abs(float(vals.std(unbiased=False)) - 1) < 1e-3


def test_wrong_edge_width_is_a_clear_error():
    layout, vecs = zoo("cnn")
    model = make("gmn", "predict", layout)
    model.model.backbone.encoder.cfg.width = 4
    with pytest.raises(ValueError, match="edge width 9"):
        model(graph_batch(vecs, layout, torch.float32))
