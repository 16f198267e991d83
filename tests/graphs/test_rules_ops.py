"""Rules for ops met in real model libraries: the rule table, and what each rule records on parameters.

Soundness and hand-derived counts of these ops are in the catalogue (``catalogue_ops.py``); these tests check
the table's coverage and the roles, directions and labels that the graph builds on.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import graphs
from graphs.rules import _ALIASES, _ELEMENTWISE, RULES, elementwise
from tests.graphs.catalogue_ops import Im2ColNet, MoEResidual, StdConvNet, WeightNormNet


def _trace(model, *inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", graphs.UnreadParameterWarning)
        return graphs.trace(model, inputs)


def test_every_in_place_form_of_an_elementwise_op_has_the_elementwise_rule():
    names = [n for n in _ELEMENTWISE + _ALIASES if hasattr(torch.ops.aten, f"{n}_")]
    assert len(names) > 80
    assert all(RULES[f"{n}_"] is elementwise for n in names)
    for n in ("hardswish_", "div_", "mul_", "sub_", "clamp_", "elu_", "leaky_relu_", "hardsigmoid_", "multiply",
              "divide", "subtract", "true_divide", "clip", "max.other", "min.other", "maximum", "minimum"):
        assert RULES[n] is elementwise, n
    assert RULES["max"] is not elementwise  # the one-tensor overloads stay reductions
    assert all(hasattr(torch.ops.aten, k.split(".")[0]) for k in RULES if k.endswith("_"))


def test_weight_standardization_keeps_the_conv_role():
    layout = _trace(StdConvNet(), torch.randn(2, 3, 6, 6))
    w, gain = layout.param("conv2.weight"), layout.param("conv2.gain")
    assert w.role == "conv" and gain.role == "norm_weight"
    assert gain.axes[0] == w.axes[0] and gain.axes[1:] == (("u",),) * 3
    assert w.axes[1] == layout.param("conv1.weight").axes[0]  # standardizing does not fix the input channels


def test_weight_norm_records_the_layer_on_v_and_ties_g():
    layout = _trace(WeightNormNet(), torch.randn(2, 7, 4))
    g, v = (layout.param(f"fc1.parametrizations.weight.original{i}") for i in (0, 1))
    assert v.role == "linear" and v.direction == (1, 0) and g.role == "scale"
    assert g.axes == (v.axes[0], ("u",))
    conv_g = layout.param("conv.parametrizations.weight.original0")  # dim=2: one scale per kernel offset
    assert conv_g.axes[:2] == (("u",), ("u",)) and layout.groups[conv_g.axes[2][1]].spatial


def test_im2col_columns_are_channels_times_kernel_offsets():
    layout = _trace(Im2ColNet(), torch.randn(2, 3, 6, 6))
    cols = layout.param("patch.weight").axes[1]
    assert cols[0] == "p" and cols[1][0] == layout.param("stem.weight").axes[0]
    kernel = layout.groups[cols[1][1][1]]
    assert kernel.size == 4 and kernel.spatial
    assert layout.param("conv.weight").axes[1] == layout.param("stem.weight").axes[0]  # col2im gives back A


def test_stacked_expert_weights_have_the_expert_index_as_an_edge_slot():
    layout = _trace(MoEResidual(), torch.randn(2, 3, 6))
    gate_up, down = layout.param("moe.gate_up"), layout.param("moe.down")
    assert layout.groups[gate_up.axes[0][1]].spatial and layout.groups[down.axes[0][1]].spatial
    hidden = layout.groups[down.axes[2][1]]
    assert not hidden.fixed and hidden.size == 12 and gate_up.axes[1] == ("c", (down.axes[2], down.axes[2]))
    assert (gate_up.role, gate_up.direction) == (down.role, down.direction) == ("linear", (2, 1))  # W[E, out, in]
    graph = graphs.to_graph(MoEResidual(), layout)
    assert graph.edge_attr.shape[1] == 4  # one slot per expert


def test_grouped_matmul_experts_match_the_batched_ones():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    grouped = MoEResidual(grouped=True)
    batched = MoEResidual()
    batched.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 3, 6)
    with torch.no_grad():
        assert torch.allclose(grouped(x), batched(x), atol=1e-6)  # the same function, two op paths
    a, b = _trace(grouped, x), _trace(batched, x)
    for name in ("moe.gate_up", "moe.down"):
        pa, pb = a.param(name), b.param(name)
        assert (pa.role, pa.direction) == (pb.role, pb.direction)
        assert [a.groups[ax[1]].spatial for ax in pa.axes[:1]] == [True]
    assert a.group_sizes() == b.group_sizes() == [8, 12]


def test_max_min_reductions_still_reduce():
    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)

        def forward(self, x):
            h = self.fc(x)  # (B, T, 5)
            return self.out(h.max(dim=1).values + h.min(dim=1).values + h.amax(dim=1))

    layout = _trace(Pool(), torch.randn(2, 4, 3))
    assert layout.group_sizes() == [5]
