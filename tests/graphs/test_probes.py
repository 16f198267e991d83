"""Probe features: where activations live, exact values, equivariance under neuron symmetries, learned probes."""

import json

import pytest
import torch
from torch import nn

import graphs
from datasets.zoo.models import SmallCNN
from graphs.compile import axis_maps, compile_layout
from graphs.errors import LayoutMismatchError
from graphs.param_graph import NodeType
from graphs.probes import ProbeNet, ProbeSites, find_probe_sites, probe_features
from graphs.tracer import export
from tests.equivariance import as_double
from tests.graphs.catalogue import ALL_CASES, CASES

CASE = {c.name: c for c in CASES}
ATOL = 1e-10


def close(a, b, tol: float = ATOL) -> bool:
    """Equal up to ``tol`` relative to the features' scale (at least 1)."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def double_case(name: str):
    """A catalogue network in float64 with its layout and exported program."""
    case = CASE[name]
    model, inputs, _ = as_double(case.build(), case.inputs())
    return model, inputs, graphs.trace(model, inputs), export(model, inputs)


def random_probes(inputs, p: int, seed: int = 3):
    x = inputs[0]
    g = torch.Generator().manual_seed(seed)
    if not x.is_floating_point():
        return torch.randint(1, int(x.max()) + 1, (p, *x.shape[1:]), generator=g)
    return torch.randn(p, *x.shape[1:], generator=g, dtype=x.dtype)


def perturbed(model, seed: int) -> dict:
    """Another network of the same architecture: every float tensor moved by noise."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            noise = 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype)
            v = v * noise.exp() if k.endswith("running_var") else v + noise  # variances stay positive
        out[k] = v
    return out


def space_nodes(layout, label) -> torch.Tensor:
    """Graph node of every index of an axis with ``label`` (the compiled node spaces)."""
    c = compile_layout(layout)
    first = {}
    for n, s in enumerate(c.node_space.tolist()):
        first.setdefault(s, n)
    offset = {key: first[i] for i, key in enumerate(c.spaces)}
    keys, units, _, _ = axis_maps(layout, label)
    return torch.tensor([offset[k] + int(u) for k, u in zip(keys, units, strict=True)])


@pytest.mark.parametrize("name", ["mlp_relu", "conv2d_cnn", "bn2d_cnn", "resnet_two_stage", "densenet_concat",
                                  "attention_sdpa", "split_qkv_attention", "tiny_lm_tied"])
def test_probe_features_permute_with_nodes(name):
    model, inputs, layout, program = double_case(name)
    net = ProbeNet(program, layout)
    c = compile_layout(layout)
    covered = net.sites.covered()
    for t in (NodeType.HIDDEN, NodeType.OUTPUT) + ((NodeType.INPUT,) if inputs[0].is_floating_point() else ()):
        mask = c.node_type == int(t)
        assert covered[mask].all(), f"{t.name} nodes without an activation: {int((~covered[mask]).sum())}"
    assert not covered[c.node_type == int(NodeType.PARAM)].any()
    probes = random_probes(inputs, 5)
    sd = model.state_dict()
    gen = torch.Generator().manual_seed(0)
    perms = [graphs.random_symmetry(layout, gen) for _ in range(2)]
    other = perturbed(model, 1)
    feats = net([sd] + [graphs.apply_symmetry(sd, layout, p) for p in perms] + [other], probes)
    assert feats.shape == (4, c.num_nodes, 5) and feats.dtype == torch.float64
    assert net.vmap_ok
    for i, perm in enumerate(perms, start=1):
        s = graphs.node_permutation(layout, perm)
        assert not torch.equal(s, torch.arange(c.num_nodes))
        assert close(feats[i], feats[0][s])
        assert (feats[i] - feats[0]).abs().max() > 1e-3  # the permutation really moved the features
    alive = feats[0][covered].abs().amax(1) > 0  # a dead ReLU on every probe is possible, not on most nodes
    assert alive.float().mean() > 0.8
    assert (feats[0][~covered] == 0).all()
    assert (feats[3] - feats[0]).abs().max() > 1e-3  # sensitivity: another network, other features


def test_mlp_features_are_the_activations():
    model, inputs, layout, program = double_case("mlp_relu")  # Linear 8-16, ReLU, 16-16, ReLU, 16-3
    x = random_probes(inputs, 6)
    feats = probe_features(program, model.state_dict(), layout, x)[0]  # [N, P]
    h1 = torch.relu(model[0](x))
    h2 = torch.relu(model[2](h1))
    for name, act in (("0.weight", h1), ("2.weight", h2), ("4.weight", model(x))):
        nodes = space_nodes(layout, layout.param(name).axes[0])
        assert torch.allclose(feats[nodes], act.T, atol=1e-12, rtol=0)
    assert torch.allclose(feats[space_nodes(layout, layout.param("0.weight").axes[1])], x.T, atol=0, rtol=0)


def test_conv_features_are_spatial_means():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=8, depth=3, padding=1).double().eval()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    layout = graphs.trace(model, x[:2])
    feats = probe_features(model, model.state_dict(), layout, x)[0]
    h = torch.relu(model.convs[0](x))
    nodes = space_nodes(layout, layout.param("convs.0.weight").axes[0])
    assert torch.allclose(feats[nodes], h.mean((2, 3)).T, atol=1e-12, rtol=0)
    out_nodes = space_nodes(layout, layout.param("head.weight").axes[0])
    assert torch.allclose(feats[out_nodes], model(x).T, atol=1e-12, rtol=0)


def test_loop_equals_vmap_and_module_equals_saved_program(tmp_path):
    model, inputs, layout, program = double_case("resnet_two_stage")
    probes = random_probes(inputs, 3)  # P=3 with an exported batch of 2: the last chunk is padded
    sds = [model.state_dict(), perturbed(model, 2)]
    ref = probe_features(program, sds, layout, probes)
    assert close(probe_features(program, sds, layout, probes, vmap=False), ref, 1e-12)
    assert close(probe_features(model, sds, layout, probes), ref, 1e-12)
    path = tmp_path / "net.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path)  # no source code of the network involved
    assert close(probe_features(loaded, sds, layout, probes), ref, 1e-12)
    rows = graphs.batch.flatten_state_dicts(sds, layout)
    assert torch.equal(probe_features(program, rows, layout, probes), ref)


def test_sites_json_round_trip():
    _, inputs, layout, program = double_case("attention_sdpa")
    sites = find_probe_sites(program, layout)
    back = ProbeSites.from_dict(json.loads(json.dumps(sites.to_dict())))
    assert back == sites
    assert back.layout == layout.fingerprint and back.batch_size == 2
    with pytest.raises(ValueError, match="recompute them"):
        ProbeSites.from_dict({"format": "something else"})


def test_program_exported_with_batch_one():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=8, depth=3, padding=1).double().eval()
    one, two = torch.zeros(1, 1, 8, 8, dtype=torch.float64), torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    layout = graphs.trace(model, one)  # zoo builders trace with a batch of one
    assert layout == graphs.trace(model, two)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    a = probe_features(export(model, one), model.state_dict(), layout, x)
    b = probe_features(export(model, two), model.state_dict(), layout, x)
    assert close(a, b, 1e-12) and a.abs().max() > 0


def test_learned_probes_get_gradients_and_stay_equivariant():
    model, inputs, layout, program = double_case("bn2d_cnn")
    net = ProbeNet(program, layout)
    probes = nn.Parameter(random_probes(inputs, 4))
    sd = model.state_dict()
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(5))
    opt = torch.optim.SGD([probes], lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        feats = net([sd, graphs.apply_symmetry(sd, layout, perm)], probes)
        feats[0, -4:].square().sum().backward()  # the logits' output nodes
        assert probes.grad is not None and probes.grad.abs().max() > 0 and torch.isfinite(probes.grad).all()
        opt.step()
    feats = net([sd, graphs.apply_symmetry(sd, layout, perm)], probes)
    assert close(feats[1], feats[0][graphs.node_permutation(layout, perm)])


def test_other_device_runs_a_moved_copy():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=4, depth=2, padding=1).eval()
    x = torch.zeros(2, 1, 8, 8)
    layout, program = graphs.trace(model, x), export(model, x)
    net = ProbeNet(program, layout)
    rows = graphs.batch.flatten_state_dicts([model.state_dict()] * 3, layout).to("meta")
    out = net(rows, torch.zeros(5, 1, 8, 8, device="meta"))
    assert out.shape == (3, compile_layout(layout).num_nodes, 5) and out.device.type == "meta"
    assert program.state_dict["convs.0.weight"].device.type == "cpu"  # the stored program is untouched


def test_bad_inputs_have_clear_errors():
    model, inputs, layout, program = double_case("mlp_relu")
    net = ProbeNet(program, layout)
    sd = model.state_dict()
    with pytest.raises(ValueError, match=r"needs \[P, 8\]"):
        net(sd, torch.zeros(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="1 inputs but 2"):
        net(sd, (torch.zeros(3, 8), torch.zeros(3, 8)))
    with pytest.raises(LayoutMismatchError, match=r"needs \(B, 467\)"):
        net(torch.zeros(2, 5), torch.zeros(3, 8))
    with pytest.raises(TypeError, match="ExportedProgram, an nn.Module or a ProbeNet"):
        probe_features("net.pt2", sd, layout, torch.zeros(3, 8))
    _, _, other_layout, other_program = double_case("mlp_dropout")
    with pytest.raises(LayoutMismatchError, match="export the architecture"):
        ProbeNet(other_program, layout)
    with pytest.raises(LayoutMismatchError, match="computed for layout"):
        ProbeNet(program, layout, find_probe_sites(other_program, other_layout))


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_probe_features_equivariant_on_every_catalogue_network(case):
    if case.hf:
        pytest.importorskip("transformers")
    model, inputs, kwargs = as_double(case.build(), case.inputs(), case.kwargs() if case.kwargs else None)
    layout, program = graphs.trace(model, inputs, kwargs), export(model, inputs, kwargs)
    net = ProbeNet(program, layout)
    c = compile_layout(layout)
    hidden = (c.node_type == int(NodeType.HIDDEN)) | (c.node_type == int(NodeType.OUTPUT))
    assert net.sites.covered()[hidden].all()
    g = torch.Generator().manual_seed(3)
    probes = tuple(random_probes((x,), 4, seed=i) if not x.is_floating_point()
                   else torch.randn(4, *x.shape[1:], generator=g, dtype=x.dtype)
                   for i, x in enumerate((*inputs, *(kwargs or {}).values())))
    sd = model.state_dict()
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(0))
    feats = net([sd, graphs.apply_symmetry(sd, layout, perm), perturbed(model, 1)], probes)
    # the case's tolerance: 1e-9 or looser only with a reason (LlamaRMSNorm computes in float32)
    assert close(feats[1], feats[0][graphs.node_permutation(layout, perm)], max(ATOL, case.rtol))
    assert (feats[2] - feats[0]).abs().max() > 1e-6
