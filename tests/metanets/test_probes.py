"""Probe features inside metanetworks: invariance of a Predictor with probes, sensitivity, learned probes."""

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import graphs
from datasets.zoo.models import SmallCNN
from graphs.batch import flatten_state_dicts, rows_to_batch
from graphs.probes import ProbeNet
from graphs.tracer import export
from metanets import ModelConfig, build_model
from metanets.gmn import GMNConfig
from metanets.models import Predictor
from metanets.probes import ProbeFeatures
from tests.equivariance import as_double
from tests.graphs.catalogue import CASES

CASE = {c.name: c for c in CASES}
P = 6


def zoo(name: str, n: int = 3):
    """A float64 catalogue network, its layout and program, and ``n`` different networks of it as rows."""
    case = CASE[name]
    model, inputs, _ = as_double(case.build(), case.inputs())
    layout = graphs.trace(model, inputs)
    g = torch.Generator().manual_seed(7)
    sds = []
    for _ in range(n):
        sds.append({k: (v * (0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype)).exp() if "running_var" in k
                        else v + 0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype)) if v.is_floating_point()
                    else v for k, v in model.state_dict().items()})
    probes = torch.randn(P, *inputs[0].shape[1:], generator=g, dtype=torch.float64)
    return layout, export(model, inputs), flatten_state_dicts(sds, layout), probes


def predictor(layout, program, probes, learned=False, layer="gmn"):
    cfg = ModelConfig(name=layer, task="predict", out_dim=2, num_norm_keys=len(layout.params), normalize_by="param")
    cfg.gmn = GMNConfig(layer=layer, hidden=16, layers=2, width=graphs.compile_layout(layout).width,
                        max_layers=len(layout.params), probe_dim=P)
    torch.manual_seed(0)
    return Predictor(cfg, ProbeFeatures(ProbeNet(program, layout), probes, learned=learned)).double().eval()


@pytest.mark.parametrize(("name", "layer"), [("resnet_two_stage", "gmn"), ("attention_sdpa", "gmn"),
                                             ("mlp_relu", "pna"), ("conv2d_cnn", "transformer")])
def test_predictor_with_probes_is_invariant_and_sensitive(name, layer):
    layout, program, rows, probes = zoo(name)
    model = predictor(layout, program, probes, layer=layer)
    gen = torch.Generator().manual_seed(1)
    perm_rows = torch.stack([r[graphs.symmetry_index(layout, graphs.random_symmetry(layout, gen))] for r in rows])
    assert not torch.equal(perm_rows, rows)
    with torch.no_grad():
        ref = model(rows_to_batch(rows, layout))
        out = model(rows_to_batch(perm_rows, layout))
        assert (out - ref).abs().max() <= 1e-10 * max(1.0, float(ref.abs().max()))
        assert (ref[0] - ref[1]).abs().max() > 1e-6  # different networks, different predictions
        model.probe.probes.add_(0.5)  # other probes, other features: they reach the prediction
        assert (model(rows_to_batch(rows, layout)) - ref).abs().max() > 1e-6


def test_probe_features_change_the_node_embeddings_equivariantly():
    layout, program, rows, probes = zoo("bn2d_cnn", n=1)
    feats = ProbeFeatures(ProbeNet(program, layout), probes)
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(2))
    batch = feats(rows_to_batch(rows, layout))
    moved = feats(rows_to_batch(rows[:, graphs.symmetry_index(layout, perm)], layout))
    assert batch.probe.shape == (graphs.compile_layout(layout).num_nodes, P)
    s = graphs.node_permutation(layout, perm)
    assert (moved.probe - batch.probe[s]).abs().max() <= 1e-10
    assert (moved.probe - batch.probe).abs().max() > 1e-3


def test_learned_probes_train_with_the_metanet():
    layout, program, rows, probes = zoo("resnet_two_stage")
    model = predictor(layout, program, probes, learned=True).train()
    assert isinstance(model.probe.probes, nn.Parameter)
    assert any(p is model.probe.probes for p in model.parameters())
    loss = model(rows_to_batch(rows, layout)).square().mean()
    loss.backward()
    grad = model.probe.probes.grad
    assert grad is not None and grad.abs().max() > 0 and torch.isfinite(grad).all()
    with torch.no_grad():
        model.probe.probes.sub_(0.1 * grad)
    model.eval()
    gen = torch.Generator().manual_seed(3)
    perm_rows = torch.stack([r[graphs.symmetry_index(layout, graphs.random_symmetry(layout, gen))] for r in rows])
    with torch.no_grad():
        ref, out = model(rows_to_batch(rows, layout)), model(rows_to_batch(perm_rows, layout))
    assert (out - ref).abs().max() <= 1e-10 * max(1.0, float(ref.abs().max()))


def test_probes_in_a_batch_of_two_architectures():
    torch.manual_seed(0)
    nets = [SmallCNN(1, 10, width=w, depth=2, padding=1).eval() for w in (4, 6, 4, 6, 4)]
    x = torch.zeros(2, 1, 8, 8)
    layouts = [graphs.trace(n, x) for n in nets]
    pns = {lay.fingerprint: ProbeNet(export(n, x), lay) for n, lay in zip(nets[:2], layouts[:2], strict=True)}
    probes = torch.randn(4, 1, 8, 8)
    feats = ProbeFeatures(list(pns.values()), probes)
    batch = Batch.from_data_list([graphs.to_graph(n, lay) for n, lay in zip(nets, layouts, strict=True)])
    got = feats.features(batch)
    for i, (n, lay) in enumerate(zip(nets, layouts, strict=True)):
        one = pns[lay.fingerprint](n.state_dict(), probes)[0]
        assert torch.allclose(got[batch.ptr[i]:batch.ptr[i + 1]], one, atol=1e-6, rtol=0)
    with pytest.raises(graphs.LayoutMismatchError, match="no exported program"):
        ProbeFeatures(pns[layouts[0].fingerprint], probes).features(batch)


def test_one_layout_several_functions_take_batch_program():
    torch.manual_seed(0)
    acts = ("relu", "tanh", "relu", "gelu")  # one layout: the activation has no weights
    nets = [SmallCNN(1, 10, width=4, depth=2, padding=1, activation=a).eval() for a in acts]
    x = torch.zeros(2, 1, 8, 8)
    layout = graphs.trace(nets[0], x)
    assert all(graphs.trace(n, x) == layout for n in nets)
    programs = {a: ProbeNet(export(n, x), layout) for n, a in zip(nets, acts, strict=True)}
    order = list(programs)
    probes = torch.randn(3, 1, 8, 8)
    feats = ProbeFeatures([programs[a] for a in order], probes)
    batch = rows_to_batch(flatten_state_dicts([n.state_dict() for n in nets], layout), layout)
    with pytest.raises(ValueError, match="share layout"):
        feats.features(batch)
    batch.program = torch.tensor([order.index(a) for a in acts])
    got = feats.features(batch).reshape(len(nets), -1, 3)
    for i, (n, a) in enumerate(zip(nets, acts, strict=True)):
        assert torch.allclose(got[i], programs[a](n.state_dict(), probes)[0], atol=1e-6, rtol=0)
    assert (got[1] - programs["relu"](nets[1].state_dict(), probes)[0]).abs().max() > 1e-3  # tanh is not relu
    batch.program = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="each of the 4 graphs"):
        feats.features(batch)


def test_probe_dim_zero_keeps_models_and_checkpoints_unchanged():
    layout, program, rows, probes = zoo("mlp_relu", n=1)
    probes = probes.float()  # the models here are float32
    cfg = ModelConfig(name="gmn", task="predict", num_norm_keys=len(layout.params), normalize_by="param")
    plain = build_model(cfg)
    assert not any("probe" in k for k in plain.state_dict())
    old = cfg.to_dict()
    old["gmn"].pop("probe_dim")  # a config saved before probe features existed
    assert ModelConfig.from_dict(old).gmn.probe_dim == 0
    cfg.gmn.probe_dim = P
    with pytest.raises(ValueError, match="needs the probe module"):
        build_model(cfg)
    with pytest.raises(ValueError, match="has 3 probes but GMNConfig.probe_dim=6"):
        build_model(cfg, ProbeFeatures(ProbeNet(program, layout), probes[:3]))
    with pytest.raises(ValueError, match="takes no probe features"):
        build_model(ModelConfig(name="statnn", gmn=GMNConfig(probe_dim=P)))
    model = build_model(cfg, ProbeFeatures(ProbeNet(program, layout), probes))
    assert "model.probe.probes" in model.state_dict()
    # a checkpoint restores its probes into a module built with only their number
    rebuilt = build_model(cfg, ProbeFeatures(ProbeNet(program, layout), P))
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.model.probe.probes, model.model.probe.probes)
    with pytest.raises(ValueError, match="has no probe features"):
        rebuilt.model.backbone(rows_to_batch(rows.float(), layout))
