"""graphs.trace on awkward networks: failing rules, unread parameters, a batch of one."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphs
from graphs.rules import RULES
from graphs.tracer import Tracer
from tests.equivariance import as_double, assert_exact_round_trip, assert_sound
from tests.graphs.catalogue import ALL_CASES
from tests.graphs.catalogue_ops import MinMaxMix


# ------------------------------------------------------------------ a failing rule is a clean error
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def test_a_crashing_rule_becomes_unsupported_network_error(monkeypatch):
    def broken(t, node, args, kwargs):
        return [][0]

    monkeypatch.setitem(RULES, "relu", broken)
    with pytest.raises(graphs.UnsupportedNetworkError) as info:
        graphs.trace(_mlp(), torch.randn(2, 3))
    err = info.value
    assert err.op == "aten.relu" and err.module == "1"
    assert "'broken' failed" in str(err) and "IndexError" in str(err) and "report it" in err.hint
    assert isinstance(err.__cause__, IndexError)


def test_two_tensor_max_without_its_rule_fails_cleanly(monkeypatch):
    """The crash of issue 13 (two-tensor max treated as a reduction) now names the op and the module."""
    monkeypatch.delitem(RULES, "max.other")
    with pytest.raises(graphs.UnsupportedNetworkError) as info:
        graphs.trace(MinMaxMix(), torch.randn(2, 5, 8))
    assert info.value.op == "aten.max.other" and info.value.module == ""
    assert "'reduction' failed" in str(info.value) and "rank" in str(info.value)


def test_two_tensor_max_is_elementwise():
    model, (x,), _ = as_double(MinMaxMix(), (torch.randn(2, 5, 8),))
    layout = graphs.trace(model, x)
    assert layout.group_sizes() == [10]
    assert layout.param("a.weight").axes[0] == layout.param("b.weight").axes[0]  # max(a, b) ties a and b
    assert_sound(model, layout, (x,))


def test_a_layout_failure_becomes_unsupported_network_error(monkeypatch):
    def broken(tracer, model):
        raise KeyError("lost")

    monkeypatch.setattr(importlib.import_module("graphs.trace"), "build_layout", broken)
    with pytest.raises(graphs.UnsupportedNetworkError, match="could not be recorded.*KeyError"):
        graphs.trace(_mlp(), torch.randn(2, 3))


# ------------------------------------------------------------------ parameters the graph never reads
class CachedGain(nn.Module):
    """``fc2(relu(fc1(x)) * exp(gain))`` where eval mode caches ``exp(gain)`` on the first forward.

    The pattern of attention-bias caches (LeViT, TinyViT): once the cache is filled, ``torch.export`` reads it
    as a constant and never reads ``gain``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)
        self.gain = nn.Parameter(torch.randn(6))
        self.cache: dict[str, Tensor] = {}

    def scale(self) -> Tensor:
        if self.training:
            return self.gain.exp()
        if "gain" not in self.cache:
            self.cache["gain"] = self.gain.detach().exp()
        return self.cache["gain"]

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)) * self.scale())


def _fresh_output_error(state: dict, perm_state: dict, x: Tensor) -> float:
    """Output change of a freshly built CachedGain (its cache empty) between two state_dicts."""
    outs = []
    for sd in (state, perm_state):
        model = CachedGain().double().eval()
        model.load_state_dict(sd)
        with torch.no_grad():
            outs.append(model(x))
    return float((outs[1] - outs[0]).abs().max() / outs[0].abs().max().clamp(min=1.0))


def _cached_model() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    model = CachedGain().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # fills the cache
    return model, x


def test_unread_parameter_is_fixed_with_a_warning():
    model, x = _cached_model()
    with pytest.warns(graphs.UnreadParameterWarning, match=r"never read.*'gain'.*cache"):
        layout = graphs.trace(model, x)
    group = layout.groups[layout.param("gain").axes[0][1]]
    assert group.fixed and any("never read" in r for r in group.reasons)
    assert layout.group_sizes() == []  # the cached constant varies along fc1's axis, so fc1's group is fixed too
    gen = torch.Generator().manual_seed(0)
    sd = model.state_dict()
    for _ in range(3):  # sound for the real network, which recomputes the cache from gain
        perm = graphs.random_symmetry(layout, gen)
        assert _fresh_output_error(sd, graphs.apply_symmetry(sd, layout, perm), x) < 1e-12


def test_without_the_unread_check_a_reported_symmetry_changes_the_output(monkeypatch):
    model, x = _cached_model()
    monkeypatch.setattr(Tracer, "fix_unread", lambda self: None)
    layout = graphs.trace(model, x)
    assert layout.group_sizes() == [6]  # gain's own axis looks free
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(0))
    sd = model.state_dict()
    assert _fresh_output_error(sd, graphs.apply_symmetry(sd, layout, perm), x) > 1e-3


def test_a_fresh_model_reads_the_parameter_and_has_no_warning(recwarn):
    torch.manual_seed(0)
    model = CachedGain().double().eval()
    layout = graphs.trace(model, torch.randn(3, 4, dtype=torch.float64))
    assert not [w for w in recwarn if issubclass(w.category, graphs.UnreadParameterWarning)]
    assert layout.group_sizes() == [6]  # fc1's group, with gain's axis in it
    assert layout.param("gain").axes[0] == layout.param("fc1.weight").axes[0]


class WithSpare(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.spare = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(4, 4)  # spare: never called

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def test_unused_submodule_is_reported():
    model = WithSpare()
    with pytest.warns(graphs.UnreadParameterWarning, match=r"'spare.weight', 'spare.bias'"):
        layout = graphs.trace(model, torch.randn(2, 3))
    assert all(layout.groups[ax[1]].fixed for ax in layout.param("spare.weight").axes)
    assert layout.group_sizes() == [4]


def test_hf_levit_attention_bias_cache():
    """Hugging Face LeViT caches ``attention_biases[:, idxs]`` on an eval forward (issue 13's trap)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LevitConfig(image_size=64, patch_size=16, hidden_sizes=[16, 32, 48],
                                   num_attention_heads=[2, 4, 6], depths=[1, 1, 1], key_dim=[8, 8, 8],
                                   mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2], num_labels=3)

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = transformers.LevitForImageClassification(cfg)

        def forward(self, x: Tensor) -> Tensor:
            return self.m(x).logits

    torch.manual_seed(0)
    model = Logits().double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attention_biases"):
                p.normal_()  # zeros at init would hide a wrong permutation
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    fresh_layout = graphs.trace(copy.deepcopy(model), x)
    with torch.no_grad():
        model(x)  # fills the caches
    with pytest.warns(graphs.UnreadParameterWarning, match="attention_biases"):
        layout = graphs.trace(model, x)
    sd, gen = model.state_dict(), torch.Generator().manual_seed(0)
    ref = Logits().double().eval()
    ref.load_state_dict(sd)
    for lay in (layout, fresh_layout):
        for _ in range(2):
            other = Logits().double().eval()  # empty caches: computes the biases from the parameters
            other.load_state_dict(graphs.apply_symmetry(sd, lay, graphs.random_symmetry(lay, gen)))
            with torch.no_grad():
                assert (other(x) - ref(x)).abs().max() < 1e-9 * ref(x).abs().max()


# ------------------------------------------------------------------ a batch of one
_BATCH_CASES = ["mlp_relu", "tiny_vit", "resnet_two_stage", "attention_mask_kwarg", "gqa_attention", "mha_packed",
                "conv_channel_se", "densenet_concat", "unet_transpose", "lstm_classifier", "tiny_lm_tied",
                "moe_batched_experts", "im2col_col2im", "hf_vit"]


@pytest.mark.parametrize("name", _BATCH_CASES)
def test_batch_of_one_gives_the_same_layout(name):
    case = next(c for c in ALL_CASES if c.name == name)
    if case.hf:
        pytest.importorskip("transformers")
    kwargs = case.kwargs() if case.kwargs else None
    model, inputs, kwargs = as_double(case.build(), case.inputs(), kwargs)
    two = graphs.trace(model, inputs, kwargs)
    one_in = tuple(x[:1] for x in inputs)
    one_kw = {k: v[:1] for k, v in kwargs.items()}
    one = graphs.trace(model, one_in, one_kw)
    assert one.fingerprint == two.fingerprint
    assert_exact_round_trip(model, one)
    assert_sound(model, one, one_in, one_kw, rtol=case.rtol)


def test_vit_class_token_at_batch_one():
    """A class token ``zeros(1, 1, D)`` cat'ed with the patches of a batch of 1: its unit axes stay units."""
    case = next(c for c in ALL_CASES if c.name == "tiny_vit")
    model = case.build()
    with torch.no_grad():
        model.cls_token.zero_()
    layout = graphs.trace(model, case.inputs()[0][:1])
    axes = layout.param("cls_token").axes
    assert axes[0] == ("u",) and axes[2] == layout.param("patch.weight").axes[0]  # R, the residual stream
    two = graphs.trace(model, case.inputs())
    assert graphs.to_graph(model, layout).num_nodes == graphs.to_graph(model, two).num_nodes


class UnitAxesFirst(nn.Module):
    """Weights with unit axes written first: ``pos + h``, ``gain.expand(B, -1, -1) * h``, ``cat([reg, h])``."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(8, 2)
        self.pos = nn.Parameter(torch.randn(1, 5, 8))
        self.gain = nn.Parameter(torch.rand(1, 1, 8) + 0.5)
        self.reg = nn.Parameter(torch.randn(1, 2, 8))

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 5, 4)
        h = self.pos + self.inp(x)
        h = self.gain.expand(x.shape[0], -1, -1) * F.gelu(h)
        h = torch.cat([self.reg.expand(x.shape[0], -1, -1), h], dim=1)  # (B, 7, 8)
        return self.out(h.mean(dim=1))


def test_weight_unit_axes_stay_units_at_batch_one():
    model, (x,), _ = as_double(UnitAxesFirst(), (torch.randn(2, 5, 4),))
    two, one = graphs.trace(model, x), graphs.trace(model, x[:1])
    assert one.fingerprint == two.fingerprint
    assert one.group_sizes() == [2, 8]  # R, and the two register tokens (only averaged over)
    assert one.param("gain").axes[:2] == (("u",), ("u",))
    assert_sound(model, one, (x[:1],))
