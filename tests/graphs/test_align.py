"""graphs.align: alignment keeps the function, recovers permuted copies, and moves independent networks closer."""

import copy

import pytest
import torch
from torch import nn

import graphs
from graphs.activations import record_activations
from graphs.align import interpolate_state_dicts, merge, similarity, weight_matching
from graphs.interpolate import barrier, reset_norm_stats, shape_inputs
from tests.equivariance import output_error, prepare_case
from tests.graphs.catalogue import ALL_CASES, CASES


def _independent(sd, seed=1):
    """A random network of the same architecture: every float tensor redrawn at its own mean and scale."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point() or v.numel() < 2:
            out[k] = v.clone()
            continue
        new = torch.randn(v.shape, generator=gen, dtype=v.dtype) * v.std() + v.mean()
        out[k] = new.abs() + 0.1 if k.endswith("running_var") else new
    return out


def _case(name):
    return next(c for c in ALL_CASES if c.name == name)


def _moved(perm):
    return sum(int(not torch.equal(p, torch.arange(p.numel()))) for p in perm.values())


FUNCTION_CASES = ["resnet_two_stage", "attention_sdpa", "mha_packed", "gqa_attention", "conv1d_bn_grouped",
                  "tiny_lm_tied"]


@pytest.mark.parametrize("name", FUNCTION_CASES)
def test_alignment_keeps_the_function_and_moves_closer(name):
    model, inputs, kwargs, layout = prepare_case(_case(name))
    sd = model.state_dict()
    ref = _independent(sd)
    perm = graphs.align(ref, sd, layout)
    assert set(perm) == {g.id for g in layout.permutable_groups()}
    aligned = graphs.apply_symmetry(sd, layout, perm)
    assert output_error(model, aligned, inputs, kwargs) < 1e-10
    # sensitivity: the independent networks get permuted, and closer
    assert _moved(perm) > 0
    assert similarity(ref, aligned, layout) > similarity(ref, sd, layout) + 1e-6


@pytest.mark.parametrize("case", [c for c in CASES if c.group_sizes], ids=lambda c: c.name)
def test_permuted_copy_is_recovered_exactly(case):
    model, _inputs, _kwargs, layout = prepare_case(case)
    sd = model.state_dict()
    true = graphs.random_symmetry(layout, torch.Generator().manual_seed(1))
    other = graphs.apply_symmetry(sd, layout, true)
    assert any(not torch.equal(other[k], sd[k]) for k in sd)  # the copy is really permuted
    back = graphs.apply_symmetry(other, layout, graphs.align(sd, other, layout))
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.hf], ids=lambda c: c.name)
def test_permuted_copy_is_recovered_exactly_hf(case):
    test_permuted_copy_is_recovered_exactly(case)


def _batch(inputs, n=64, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((n, *x.shape[1:]), generator=gen, dtype=x.dtype) for x in inputs)


@pytest.mark.parametrize("name", ["mlp_activations", "attention_sdpa", "resnet_two_stage", "grouped_conv"])
def test_activation_matching_recovers_activations_and_keeps_the_function(name):
    model, inputs, kwargs, layout = prepare_case(_case(name))
    sd = model.state_dict()
    data = _batch(inputs)
    true = graphs.random_symmetry(layout, torch.Generator().manual_seed(1))
    other = graphs.apply_symmetry(sd, layout, true)
    perm = graphs.align(model, other, layout, method="activations", data=data)
    back = graphs.apply_symmetry(other, layout, perm)
    assert output_error(model, back, inputs, kwargs) < 1e-10
    # every recorded activation of the aligned copy is the reference's (dead units may swap, weights need not)
    acts_ref, acts_back = record_activations(model, layout, sd, back, data)
    assert acts_ref and all(torch.allclose(a, b, atol=1e-6) for (a, _), (b, _) in zip(acts_ref, acts_back,
                                                                                           strict=True))
    # sensitivity: an independent network is moved, and its function is kept
    ind = _independent(sd)
    perm = graphs.align(model, ind, layout, method="activations", data=data)
    assert _moved(perm) > 0
    assert output_error(_loaded(model, ind), graphs.apply_symmetry(ind, layout, perm), inputs, kwargs) < 1e-10


def _loaded(model, sd):
    m = copy.deepcopy(model)
    m.load_state_dict(sd)
    return m


def test_activation_matching_labels_heads_and_groups():
    model, inputs, _kw, layout = prepare_case(_case("attention_sdpa"))
    acts, _ = record_activations(model, layout, model.state_dict(), model.state_dict(), _batch(inputs))
    seen = {g for _, axes in acts for lab in axes for g in graphs.activations.label_atoms(lab)}
    assert {g.id for g in layout.permutable_groups()} <= seen  # heads, head dims, stream, MLP all observed


def test_activation_matching_needs_data_and_a_module():
    model, _inputs, _kw, layout = prepare_case(_case("mlp_relu"))
    sd = model.state_dict()
    with pytest.raises(ValueError, match="needs data"):
        graphs.align(sd, sd, layout, method="activations")
    with pytest.raises(ValueError, match="unknown alignment method"):
        graphs.align(sd, sd, layout, method="magic")
    other_layout = prepare_case(_case("mlp_dropout"))[3]
    with pytest.raises(graphs.LayoutMismatchError, match="network of this architecture"):
        graphs.align(sd, sd, other_layout)


def test_interpolation_and_merge():
    model, inputs, kwargs, layout = prepare_case(_case("bn1d_mlp"))
    sd = model.state_dict()
    ind = _independent(sd)
    assert all(torch.equal(interpolate_state_dicts(sd, ind, 0.0)[k], sd[k]) for k in sd)
    end = interpolate_state_dicts(sd, ind, 1.0)
    assert all(torch.equal(end[k], ind[k]) for k in sd if sd[k].is_floating_point())
    assert torch.equal(end["1.num_batches_tracked"], sd["1.num_batches_tracked"])
    mid = interpolate_state_dicts(sd, ind, 0.5)
    assert torch.allclose(mid["0.weight"], (sd["0.weight"] + ind["0.weight"]) / 2)
    # merging a network with permuted copies of itself gives it back exactly
    gen = torch.Generator().manual_seed(2)
    copies = [graphs.apply_symmetry(sd, layout, graphs.random_symmetry(layout, gen)) for _ in range(2)]
    merged = merge([sd, *copies], layout)
    assert all(torch.equal(merged[k], sd[k]) for k in sd)
    naive = {k: (sd[k] + copies[0][k]) / 2 if sd[k].is_floating_point() else sd[k] for k in sd}
    assert output_error(model, naive, inputs, kwargs) > 1e-3  # sensitivity: averaging unaligned copies breaks it
    with pytest.raises(ValueError, match="at least two"):
        merge([sd], layout)


def test_reset_norm_stats_recomputes_exact_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    x = torch.randn(50, 4, dtype=torch.float64) * 3 + 1
    reset_norm_stats(net, x, batch_size=64)
    h = net[0](x)
    assert not net.training and not net[1].training
    assert torch.allclose(net[1].running_mean, h.mean(0), atol=1e-12, rtol=0)
    assert torch.allclose(net[1].running_var, h.var(0, unbiased=True), atol=1e-12, rtol=0)
    assert net[1].momentum == 0.1


def test_barrier_and_input_shapes():
    assert barrier([0, 0.5, 1], [1.0, 3.0, 2.0]) == pytest.approx(1.5)
    assert barrier([0, 0.5, 1], [1.0, 1.0, 2.0]) == 0.0
    assert shape_inputs(torch.zeros(5, 64), torch.zeros(2, 1, 8, 8)).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="--example-input-shape"):
        shape_inputs(torch.zeros(5, 40), torch.zeros(2, 1, 8, 8))


def test_weight_matching_two_independent_mlps_reduces_distance():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).double()
    b = copy.deepcopy(a)
    for p in b.parameters():  # b = a permuted, plus noise as large as the weights' own spread
        p.data += torch.randn_like(p) * p.std()
    layout = graphs.trace(a, torch.zeros(2, 8, dtype=torch.float64))
    true = graphs.random_symmetry(layout, torch.Generator().manual_seed(4))
    sb = graphs.apply_symmetry(b.state_dict(), layout, true)
    perm = weight_matching(a.state_dict(), sb, layout)
    inverse = {g: torch.argsort(p) for g, p in true.items()}
    assert all(torch.equal(perm[g], inverse[g]) for g in perm)  # the noisy copy's permutation is found


class _Factored(nn.Module):
    """``x @ (a @ b)``: the inner size-5 group is contracted between two weights and labels no activation."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(5, 4))
        self.fc, self.out = nn.Linear(4, 7), nn.Linear(7, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x @ (self.a @ self.b))))


def test_activation_matching_falls_back_to_weights_for_unobserved_groups():
    torch.manual_seed(0)
    model = _Factored().double().eval()
    x = torch.randn(64, 6, dtype=torch.float64)
    layout = graphs.trace(model, x[:2])
    sd = model.state_dict()
    inner = layout.param("a").axes[1][1]
    acts, _ = record_activations(model, layout, sd, sd, (x,))
    assert inner not in {g for _, axes in acts for lab in axes for g in graphs.activations.label_atoms(lab)}
    other = graphs.apply_symmetry(sd, layout, graphs.random_symmetry(layout, torch.Generator().manual_seed(5)))
    assert not torch.equal(other["a"], sd["a"])
    perm = graphs.align(model, other, layout, method="activations", data=x)
    back = graphs.apply_symmetry(other, layout, perm)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("name", ["resnet_two_stage", "attention_sdpa"])
def test_per_tensor_weight_matching_recovers_and_keeps_the_function(name):
    model, inputs, kwargs, layout = prepare_case(_case(name))
    sd = model.state_dict()
    other = graphs.apply_symmetry(sd, layout, graphs.random_symmetry(layout, torch.Generator().manual_seed(7)))
    back = graphs.apply_symmetry(other, layout, graphs.align(sd, other, layout, normalize=True))
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    ind = _independent(sd)
    perm = graphs.align(ind, sd, layout, normalize=True)
    assert _moved(perm) > 0
    assert output_error(model, graphs.apply_symmetry(sd, layout, perm), inputs, kwargs) < 1e-10
