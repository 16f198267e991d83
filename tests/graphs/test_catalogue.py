"""Every catalogue network: exact round trip, sound and complete symmetries, equivariant graph."""

import pytest
import torch

import graphs
from graphs.compile import _Builder
from tests.equivariance import (
    assert_exact_round_trip,
    assert_graph_equivariant,
    assert_sound,
    output_error,
    prepare_case,
)
from tests.graphs.catalogue import ALL_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_catalogue_network(case):
    model, inputs, kwargs, layout = prepare_case(case)
    # (1) exact round trip, also through the layout's JSON form
    assert_exact_round_trip(model, layout)
    assert graphs.Layout.from_json(layout.to_json()).fingerprint == layout.fingerprint
    # (2) sound: random symmetries change no output
    assert_sound(model, layout, inputs, kwargs, rtol=case.rtol)
    # (3) complete: the permutable structure a person derives by hand
    assert tuple(layout.group_sizes()) == tuple(case.group_sizes), case.note
    assert layout.num_permutable_neurons() == case.permutable_neurons, case.note
    # (4) the graph of a permuted network is the permuted graph
    assert_graph_equivariant(model, layout)
    # (5) the compiler's fast path for plain weights builds exactly what its general path builds
    assert_same_compiled(graphs.compile_layout(layout), _Builder(layout, fast=False).build())


def assert_same_compiled(a, b):
    for name in ("edge_index", "edge_type", "edge_param", "edge_chunk", "node_type", "node_pos", "node_movable",
                 "node_space", "edge_gather", "node_gather", "inverse"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.width, a.num_params, a.spaces) == (b.width, b.num_params, b.spaces)


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.group_sizes], ids=lambda c: c.name)
def test_catalogue_sensitivity(case):
    """A permutation applied to one weight alone (not a symmetry) does change the output."""
    model, inputs, kwargs, layout = prepare_case(case)
    sd = model.state_dict()
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(0))
    for p in layout.params:
        if p.role not in ("linear", "conv") or p.numel < 2:
            continue
        for ax, lab in enumerate(p.axes):
            idx = graphs.axis_permutation(layout, lab, perm)
            if not torch.equal(idx, torch.arange(idx.numel())):
                broken = dict(sd)
                broken[p.name] = sd[p.name].index_select(ax, idx)
                assert output_error(model, broken, inputs, kwargs) > 1e-6, p.name
                return
    pytest.fail("no weight with a permutable axis")
