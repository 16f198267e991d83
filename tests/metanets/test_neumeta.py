"""Weight manifold over widths (--task neumeta): width families, smoothing by permutation, sampled networks
that load strictly at any width, and train.py / eval.py end to end."""

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

import eval as eval_script
import graphs
import train as train_script
from datasets.zoo.data import load_digits_data
from graphs.cli import load_factory, run_cli
from graphs.width import (
    block_groups,
    select_units,
    shortest_path_order,
    smooth,
    total_variation,
    trace_family,
    unit_coordinates,
)
from metanets.hyper import functional_forward
from metanets.hyper.neumeta import (
    NeuMeta,
    NeuMetaConfig,
    NeuMetaLoss,
    element_coords,
    fourier_features,
    sample_state_dict,
)
from metanets.models import model_from_checkpoint

FAMILIES = textwrap.dedent('''
    from torch import nn


    def mlp(width: float) -> nn.Module:
        h = max(1, round(16 * width))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))


    def cnn(width: float) -> nn.Module:
        c, h = max(1, round(4 * width)), max(1, round(8 * width))
        return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.Conv2d(c, h, 3, padding=1), nn.BatchNorm2d(h), nn.ReLU(),
                             nn.Flatten(), nn.Linear(h * 64, 10))


    def fixed_hidden(width: float) -> nn.Module:  # the second layer ignores the width
        h = max(1, round(16 * width))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.ReLU(), nn.Linear(h, 12), nn.ReLU(), nn.Linear(12, 10))


    def scaled_output(width: float) -> nn.Module:  # the number of classes changes with the width
        h = max(1, round(16 * width))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.ReLU(), nn.Linear(h, max(1, round(10 * width))))


    class Heads(nn.Module):  # attention with 2 heads whose width scales; the head count does not
        def __init__(self, head_dim, heads=2, d=8):
            super().__init__()
            self.heads, self.head_dim = heads, head_dim
            self.q, self.k, self.v = (nn.Linear(d, heads * head_dim) for _ in range(3))
            self.o = nn.Linear(heads * head_dim, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (f(x).reshape(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
            y = nn.functional.scaled_dot_product_attention(q, k, v)
            return self.o(y.transpose(1, 2).reshape(b, t, -1))


    class Tokens(nn.Module):
        def __init__(self, head_dim, hidden, d):
            super().__init__()
            self.embed, self.att = nn.Linear(8, d), Heads(head_dim, d=d)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
            self.head = nn.Linear(d, 10)

        def forward(self, x):
            t = self.embed(x.flatten(1, 2))  # the 8 image rows as tokens
            t = t + self.att(t)
            return self.head((t + self.mlp(t)).mean(1))


    def attention(width: float) -> nn.Module:
        return Tokens(max(1, round(4 * width)), max(1, round(16 * width)), max(1, round(8 * width)))


    def no_width() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
''')

X = torch.zeros(2, 1, 8, 8)


@pytest.fixture(scope="module")
def fam_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fam") / "fam.py"
    path.write_text(FAMILIES)
    return str(path)


def _make(fam_file, name):
    return load_factory(f"{fam_file}:{name}")[0]


def _randomize_bn(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_()
    return net


# ------------------------------------------------------------- families
def test_family_groups_scale_and_fixed_groups_keep_their_size(fam_file):
    fam = trace_family(_make(fam_file, "cnn"), (X,), [0.25, 0.5, 0.75], "cnn")
    scaling = fam.scaling_groups
    assert [fam.full.groups[g].size for g in scaling] == [4, 8]
    assert [fam.layouts[0.5].groups[g].size for g in scaling] == [2, 4]
    assert [fam.layouts[0.25].groups[g].size for g in scaling] == [1, 2]
    for r, layout in fam.layouts.items():  # inputs, kernel offsets, positions and classes never change
        for g, f in zip(layout.groups, fam.full.groups, strict=True):
            assert f.fixed == g.fixed or g.size == 1
            if f.fixed:
                assert g.size == f.size, (r, g)
        assert [p.name for p in layout.params] == [p.name for p in fam.full.params]


def test_family_errors_name_what_does_not_scale(fam_file):
    with pytest.raises(ValueError, match=r"neuron group 3 \('3.weight' axis 0\) has 12 units in "
                       r"fixed_hidden\(0.5\) and 12 in fixed_hidden\(1.0\): it does not scale with the width "
                       r"\(about 6 expected\)"):
        trace_family(_make(fam_file, "fixed_hidden"), (X,), [0.5], "fixed_hidden")
    with pytest.raises(ValueError, match=r"has 10 units in scaled_output\(1.0\) but 5 in scaled_output\(0.5\)"):
        trace_family(_make(fam_file, "scaled_output"), (X,), [0.5], "scaled_output")
    with pytest.raises(ValueError, match=r"must take the width ratio"):
        trace_family(_make(fam_file, "no_width"), (X,), [0.5], "no_width")
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        trace_family(_make(fam_file, "mlp"), (X,), [1.5], "mlp")


def test_attention_heads_keep_their_count_while_their_width_scales(fam_file):
    fam = trace_family(_make(fam_file, "attention"), (X,), [0.5], "attention")
    full, half = fam.full, fam.layouts[0.5]
    heads = [g for g in fam.scaling_groups if full.groups[g].size == 2]
    assert len(heads) == 1  # the heads: permutable, a count of blocks of q/k and of v/o units
    assert all(half.groups[g].size == 2 for g in heads)
    assert sorted(full.groups[g].size for g in fam.scaling_groups if g not in heads) == [4, 4, 8, 16]
    assert sorted(half.groups[g].size for g in fam.scaling_groups if g not in heads) == [2, 2, 4, 8]
    assert block_groups(full) == set(heads)
    make = _make(fam_file, "attention")
    model = NeuMeta(NeuMetaConfig(full.to_json(), hidden=16, layers=1, frequencies=3))
    net = make(0.5)
    sd = sample_state_dict(model, net, 0.5, torch.randn(4, 1, 8, 8))
    net.load_state_dict(sd, strict=True)


def test_distillation_adds_the_kl_to_the_full_networks_predictions(fam_file):
    make = _make(fam_file, "mlp")
    fam = trace_family(make, (X,), [0.5], "mlp")
    torch.manual_seed(0)
    model = NeuMeta(NeuMetaConfig(fam.full.to_json(), hidden=16, layers=1, frequencies=3))
    full_sd = make(1.0).state_dict()
    model.set_scale(full_sd)
    loss_fn = NeuMetaLoss(model)
    net, coords = make(0.5), element_coords(fam.layouts[0.5], fam.full, 0.5)
    full_coords = element_coords(fam.full, fam.full, 1.0)
    target = torch.cat([full_sd[n].reshape(-1) for n in full_coords.names])
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    teacher = torch.randn(16, 10)
    base, ce, recon, _ = loss_fn([net], [coords], x, y, full_coords, target, 0.0, 1.0)
    with_kl, ce2, _, _ = loss_fn([net], [coords], x, y, full_coords, target, 0.0, 1.0, teacher, 0.5)
    with torch.no_grad():
        logits = functional_forward(net, model(coords), x)
    p = teacher.softmax(-1)
    kl = (p * (p.log() - logits.log_softmax(-1))).sum(-1).mean()
    assert float(ce2) == pytest.approx(float(ce), rel=1e-6)
    assert float((with_kl - base).detach()) == pytest.approx(0.5 * float(kl), rel=1e-5)
    assert float(kl) > 1e-3  # sensitivity: the sampled network does not already match the teacher
    assert float(base.detach()) == pytest.approx(float(ce + recon), rel=1e-6)


def test_unit_coordinates_are_centred_in_unit_interval():
    c = unit_coordinates(4)
    assert torch.allclose(c, torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    assert float(unit_coordinates(1)[0]) == 0.5


# ------------------------------------------------------------ smoothing
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_smoothing_preserves_the_function_and_lowers_total_variation(fam_file, name):
    torch.manual_seed(0)
    net = _randomize_bn(_make(fam_file, name)(1.0)).double().eval()
    layout = graphs.trace(net, (X.double(),))
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    new, perm, tv = smooth(sd, layout)
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        before = net(x)
        net.load_state_dict(new)
        after = net(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-10)
    assert set(tv) == {g.id for g in layout.permutable_groups()}
    for g, (b, a) in tv.items():
        assert a < b, (g, b, a)  # a random network is far from its shortest order
        assert total_variation(new, layout, g) == pytest.approx(a, rel=1e-9)
        assert total_variation(sd, layout, g) == pytest.approx(b, rel=1e-9)
    # sensitivity: the permutations are not the identity and the weights did move
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perm.values())
    assert any(not torch.equal(new[k], sd[k]) for k in sd)


def test_total_variation_depends_only_on_its_own_groups_order(fam_file):
    torch.manual_seed(1)
    net = _make(fam_file, "mlp")(1.0).double()
    layout = graphs.trace(net, (X.double(),))
    sd = net.state_dict()
    g0, g1 = [g.id for g in layout.permutable_groups()]
    gen = torch.Generator().manual_seed(0)
    other = graphs.apply_symmetry(sd, layout, {g1: torch.randperm(16, generator=gen)})
    assert total_variation(other, layout, g0) == pytest.approx(total_variation(sd, layout, g0), rel=1e-12)
    own = graphs.apply_symmetry(sd, layout, {g0: torch.randperm(16, generator=gen)})
    assert total_variation(own, layout, g0) != pytest.approx(total_variation(sd, layout, g0), rel=1e-6)


def test_shortest_path_recovers_a_shuffled_line():
    pts = torch.rand(30, dtype=torch.float64).sort().values
    shuffled = pts[torch.randperm(30)]
    d = (shuffled[:, None] - shuffled[None, :]).abs().numpy()
    order = shortest_path_order(d)
    path = shuffled[torch.as_tensor(order)]
    cost = float((path[1:] - path[:-1]).abs().sum())
    assert cost == pytest.approx(float(pts[-1] - pts[0]), rel=1e-9)  # the optimum: a monotone walk
    assert sorted(order.tolist()) == list(range(30))


def test_select_units_is_removing_those_units(fam_file):
    torch.manual_seed(2)
    make = _make(fam_file, "mlp")
    net = make(1.0).double()
    layout = graphs.trace(net, (X.double(),))
    g0, g1 = [g.id for g in layout.permutable_groups()]
    keep = {g0: torch.tensor([1, 3, 4, 8, 9, 15]), g1: torch.tensor([0, 2, 5, 6, 7, 10, 11, 14])}
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 10))
    small.double().load_state_dict(select_units(net.state_dict(), layout, keep), strict=True)
    zeroed = {k: v.clone() for k, v in net.state_dict().items()}  # dropping a ReLU unit = zeroing its outputs
    drop0 = torch.ones(16, dtype=torch.bool)
    drop0[keep[g0]] = False
    drop1 = torch.ones(16, dtype=torch.bool)
    drop1[keep[g1]] = False
    zeroed["3.weight"][:, drop0] = 0
    zeroed["5.weight"][:, drop1] = 0
    net.load_state_dict(zeroed)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=0, atol=1e-12)
        assert not torch.allclose(small(x), make(1.0).double()(x))  # sensitivity: another network differs


# ------------------------------------------------------ sampled networks
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_sampled_state_dicts_load_strictly_at_any_width(fam_file, name):
    make = _make(fam_file, name)
    fam = trace_family(make, (X,), [0.5], name)
    torch.manual_seed(0)
    model = NeuMeta(NeuMetaConfig(fam.full.to_json(), hidden=16, layers=1, frequencies=3)).eval()
    model.set_scale(make(1.0).state_dict())
    x = load_digits_data().x_train[:128]
    shapes = {}
    for r in (0.25, 0.3, 0.4, 0.6, 0.875, 1.0):  # trained-looking and unseen widths alike
        net = make(r)
        sd = sample_state_dict(model, net, r, x, bn_batches=2)
        net.load_state_dict(sd, strict=True)
        assert list(sd) == list(net.state_dict())
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
        shapes[r] = tuple(sd[next(iter(sd))].shape)
        if name == "cnn":  # BatchNorm statistics were recomputed at this width, not left at 0 / 1
            assert not torch.allclose(sd["1.running_var"], torch.ones_like(sd["1.running_var"]))
            assert int(sd["1.num_batches_tracked"]) == 2
    assert shapes[0.25] != shapes[1.0]  # the sampled networks really differ in width


def test_coordinates_cover_every_weight_and_differ_between_units(fam_file):
    fam = trace_family(_make(fam_file, "cnn"), (X,), [0.5], "cnn")
    c = element_coords(fam.layouts[0.5], fam.full, 0.5)
    n = sum(p.numel for p in fam.layouts[0.5].params if not p.is_buffer)
    assert len(c.tensor_id) == len(c.out_index) == len(c.in_index) == n
    assert c.out_rows[:, 1:].min() >= 0 and c.out_rows[:, 1:].max() <= 1
    assert float(c.out_rows[:, -1].max()) == 0.5  # the width coordinate
    w = graphs.trace(_make(fam_file, "cnn")(0.5), (X,))
    sd = {k: v for k, v in NeuMeta(NeuMetaConfig(fam.full.to_json(), 8, 1, 2))(c).items()}
    assert {k: tuple(v.shape) for k, v in sd.items()} == {p.name: p.shape for p in w.params if not p.is_buffer}
    assert not torch.allclose(sd["0.weight"][0], sd["0.weight"][1])  # units are told apart by coordinates


def test_sampling_a_network_of_another_family_is_a_clear_error(fam_file):
    fam = trace_family(_make(fam_file, "mlp"), (X,), [0.5], "mlp")
    model = NeuMeta(NeuMetaConfig(fam.full.to_json(), 8, 1, 2))
    with pytest.raises(ValueError, match="different parameters"):
        sample_state_dict(model, _make(fam_file, "cnn")(0.5), 0.5, torch.zeros(4, 1, 8, 8))


def test_fan_in_is_full_over_sampled_input_length(fam_file):
    fam = trace_family(_make(fam_file, "cnn"), (X,), [0.5], "cnn")
    c = element_coords(fam.layouts[0.5], fam.full, 0.5)
    fan = dict(zip(c.names, c.fan_in.split([math.prod(s) for s in c.shapes]), strict=True))
    assert torch.equal(fan["0.weight"], torch.ones(2 * 1 * 9))  # the image channel is fixed
    assert torch.equal(fan["3.weight"], torch.full((4 * 2 * 9,), 2.0))  # 4 of 8 ... 2 of 4 input channels
    assert torch.equal(fan["7.weight"], torch.full((10 * 4 * 64,), 2.0))  # flattened 4 x 64 of 8 x 64 features
    assert all(torch.equal(fan[n], torch.ones_like(fan[n])) for n in ("0.bias", "1.weight", "1.bias", "7.bias"))
    full = element_coords(fam.full, fam.full, 1.0)
    assert torch.equal(full.fan_in, torch.ones_like(full.fan_in))


def _constant_manifold(fam, seed=0):
    """A manifold whose every tensor is one value (its mean), however wide the network: the smoothest there is."""
    torch.manual_seed(seed)
    model = NeuMeta(NeuMetaConfig(fam.full.to_json(), 8, 1, 2)).double().eval()
    with torch.no_grad():
        model.out_side.out[1].weight.zero_()
        model.out_side.out[1].bias.zero_()
        model.mean.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("scaled", [True, False])
def test_a_constant_manifold_samples_one_function_at_every_width(fam_file, scaled):
    # With every weight of a tensor equal, a ReLU MLP of any width computes the full network's function exactly
    # when each weight is multiplied by full fan-in / sampled fan-in: a layer's pre-activation is a sum over
    # its inputs, and the sum over 4 of 16 units is a quarter of the sum over 16 without the factor.
    make = _make(fam_file, "mlp")
    fam = trace_family(make, (X,), [0.25, 0.5], "mlp")
    model = _constant_manifold(fam)
    model.config.fan_in_scale = scaled
    x = load_digits_data().x_test[:64].double()
    logits = {}
    for r in (0.25, 0.5, 1.0):
        net = make(r).double()
        net.load_state_dict(sample_state_dict(model, net, r, x), strict=True)
        logits[r] = net.eval()(x).detach()
    assert float(logits[1.0].std()) > 0.1  # the network does something
    for r in (0.25, 0.5):
        if scaled:
            torch.testing.assert_close(logits[r], logits[1.0], rtol=1e-12, atol=1e-12)
        else:
            assert not torch.allclose(logits[r], logits[1.0], rtol=0.1, atol=0.1)


def test_checkpoints_from_before_the_fan_in_factor_sample_as_they_were_trained(fam_file):
    fam = trace_family(_make(fam_file, "mlp"), (X,), [0.5], "mlp")
    model = NeuMeta(NeuMetaConfig(fam.full.to_json(), 8, 1, 2))
    old = {k: v for k, v in asdict(model.config).items() if k != "fan_in_scale"}
    ckpt = {"model_config": {"name": "neumeta", "neumeta": old}, "model": model.state_dict()}
    old = {k: v for k, v in old.items() if k != "cell_filter"}
    ckpt = {"model_config": {"name": "neumeta", "neumeta": old}, "model": model.state_dict()}
    cfg = model_from_checkpoint(ckpt).config
    assert (cfg.fan_in_scale, cfg.cell_filter) == (False, False)
    ckpt["model_config"]["neumeta"] = asdict(model.config)
    cfg = model_from_checkpoint(ckpt).config
    assert (cfg.fan_in_scale, cfg.cell_filter) == (True, True)


def test_cell_filter_is_the_average_of_the_features_over_a_gaussian_of_half_the_spacing():
    torch.manual_seed(0)
    freqs = math.pi * 2.0 ** torch.arange(6, dtype=torch.float64)
    v = torch.rand(5, 4, dtype=torch.float64)  # unit, one offset, ratio, width
    spacing = torch.tensor([1 / 8, 1 / 12, 1 / 32, 0.0, 1 / 6], dtype=torch.float64)
    got = fourier_features(v, freqs, 2, spacing)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # E over a standard normal, exact for smooth f
    nodes, weights = torch.as_tensor(nodes), torch.as_tensor(weights / weights.sum())
    expect = torch.zeros_like(got)
    for z, w in zip(nodes, weights, strict=True):
        jitter = v.clone()
        jitter[:, 0] += z * spacing / 2
        expect += w * fourier_features(jitter, freqs, 2)
    expect[:, :4] = v  # the raw coordinates are kept as they are
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-12)
    torch.testing.assert_close(got[3], fourier_features(v, freqs, 2)[3], rtol=0, atol=0)  # a fixed group: as it is
    torch.testing.assert_close(got[:, 4 + 6:4 + 12], fourier_features(v, freqs, 2)[:, 4 + 6:4 + 12], rtol=0, atol=0)


# ---------------------------------------------------------- end to end
def _full_checkpoint(make, path, steps=150):
    torch.manual_seed(0)
    data = load_digits_data()
    net = make(1.0)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(steps):
        i = torch.randint(0, len(data.x_train), (64,))
        loss = nn.functional.cross_entropy(net(data.x_train[i]), data.y_train[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), path)
    return str(path)


def _end_to_end(fam_file, name, tmp_path, steps, extra=()):
    make = _make(fam_file, name)
    full = _full_checkpoint(make, tmp_path / "full.pt")
    out = str(tmp_path / "run")
    summary = train_script.main(["--task", "neumeta", "--factory", f"{fam_file}:{name}", "--checkpoint", full,
                                 "--dataset", "digits", "--out", out, "--epochs", "1", "--max-steps", str(steps),
                                 "--hidden", "16", "--layers", "1", "--frequencies", "3", "--bn-batches", "2",
                                 "--quiet", "--threads", "1", *extra])
    assert 0 <= summary["best_val"]["accuracy"] <= 1
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["smoothing"]["after"] <= ckpt["smoothing"]["before"]
    res = eval_script.main([os.path.join(out, "best.pt"), "--bn-batches", "2", "--threads", "1"])
    widths = [r["width"] for r in res["widths"]]
    assert widths == [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    seen = {r["width"]: r["trained_width"] for r in res["widths"]}
    assert seen[0.25] and seen[0.5] and seen[1.0] and not seen[0.375]  # trained at 0.25, 0.5, 0.75, 1.0
    assert all(0 <= r["accuracy"] <= 1 for r in res["widths"])
    assert os.path.isfile(os.path.join(out, "neumeta_metrics.json"))
    assert os.path.isfile(os.path.join(out, "neumeta_width.png"))
    saved = str(tmp_path / "w040.safetensors")
    res = eval_script.main([os.path.join(out, "best.pt"), "--width", "0.4", "--save", saved, "--no-plot"])
    net = make(0.4)
    sd = graphs.load_checkpoint(saved)
    net.load_state_dict(sd, strict=True)
    net.eval()
    data = load_digits_data()
    with torch.no_grad():
        acc = float((net(data.x_test).argmax(-1) == data.y_test).float().mean())
    assert acc == pytest.approx(res["accuracy"], abs=1e-6)  # the file is the network eval.py scored
    return out


def test_train_eval_save_end_to_end_mlp(fam_file, tmp_path):
    _end_to_end(fam_file, "mlp", tmp_path, steps=3)


def test_train_with_distillation_end_to_end(fam_file, tmp_path):
    _end_to_end(fam_file, "mlp", tmp_path, steps=2, extra=["--distill-weight", "1"])


@pytest.mark.slow
def test_train_eval_save_end_to_end_cnn_with_batchnorm(fam_file, tmp_path):
    out = _end_to_end(fam_file, "cnn", tmp_path, steps=3)
    sd = graphs.load_checkpoint(str(tmp_path / "w040.safetensors"))
    assert not torch.allclose(sd["1.running_var"], torch.ones_like(sd["1.running_var"]))
    with open(os.path.join(out, "neumeta_metrics.json")) as f:
        assert json.load(f)["widths"][0]["units"] == [1, 2]


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": cwd})


def _exit_status(argv, capsys):
    try:
        status = run_cli(train_script.main, argv)
    except SystemExit as exc:  # option errors: argparse prints usage and one error line
        status = exc.code
    return status, capsys.readouterr().err.strip().splitlines()


def test_bad_input_is_one_line_and_exit_2(fam_file, tmp_path, capsys):
    make = _make(fam_file, "mlp")
    torch.save(make(1.0).state_dict(), tmp_path / "mlp.pt")
    torch.save(make(0.5).state_dict(), tmp_path / "half.pt")
    base = ["--task", "neumeta", "--dataset", "digits", "--out", str(tmp_path / "r"), "--epochs", "1",
            "--max-steps", "1", "--quiet"]
    cases = [
        (["--factory", f"{fam_file}:no_width", "--checkpoint", str(tmp_path / "mlp.pt")],
         f"error: {fam_file}:no_width must take the width ratio"),
        (["--factory", f"{fam_file}:mlp", "--checkpoint", str(tmp_path / "half.pt")],
         f"error: --checkpoint {tmp_path / 'half.pt'} does not fit make(1.0)"),
        (["--factory", f"{fam_file}:mlp"], "error: --task neumeta needs --checkpoint FULL.pt"),
        (["--factory", f"{fam_file}:mlp", "--checkpoint", str(tmp_path / "mlp.pt"), "--width-range", "0.5,1.5"],
         "error: --width-range '0.5,1.5': give width ratios in (0, 1]"),
        (["--factory", f"{fam_file}:mlp", "--checkpoint", str(tmp_path / "mlp.pt"), "--distill-weight", "-1"],
         "error: --distill-weight -1.0: give 0 (off) or a positive weight"),
    ]
    for extra, message in cases:
        status, lines = _exit_status(base + extra, capsys)
        assert status == 2
        assert message in lines[-1], lines
        assert not any("Traceback" in line for line in lines)


@pytest.mark.slow
def test_cli_is_one_line_and_exit_2_in_a_subprocess(fam_file, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--task", "neumeta", "--factory",
                           f"{fam_file}:no_width", "--checkpoint", str(tmp_path / "none.pt"), "--out",
                           str(tmp_path / "r"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")


@pytest.mark.slow
def test_width_outside_the_trained_range_warns(fam_file, tmp_path):
    make = _make(fam_file, "mlp")
    full = _full_checkpoint(make, tmp_path / "full.pt", steps=5)
    out = str(tmp_path / "run")
    train_script.main(["--task", "neumeta", "--factory", f"{fam_file}:mlp", "--checkpoint", full, "--out", out,
                       "--width-range", "0.5,1.0", "--epochs", "1", "--max-steps", "1", "--quiet", "--hidden", "8",
                       "--layers", "1"])
    proc = _cli([os.path.join(ROOT, "eval.py"), os.path.join(out, "best.pt"), "--width", "0.25"], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "warning: --width 0.25 is outside the trained range 0.5..1.0" in proc.stderr
    proc = _cli([os.path.join(ROOT, "eval.py"), os.path.join(out, "best.pt"), "--save", str(tmp_path / "x.pt")], ROOT)
    assert proc.returncode == 2 and "--save needs --width" in proc.stderr
