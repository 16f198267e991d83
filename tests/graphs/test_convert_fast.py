"""The fast conversion path (one key/shape comparison, one cat, a copied graph template) against the general one."""

import pytest
import torch
from torch_geometric.data import Batch

import graphs
from graphs.batch import _rows_general, flatten_state_dicts
from graphs.compile import compile_layout
from graphs.convert import _flatten_general, _new_graph, _plan
from tests.equivariance import prepare_case
from tests.graphs.catalogue import ALL_CASES


def assert_same_graph(a, b):
    assert type(a) is type(b)
    assert list(a.keys()) == list(b.keys())
    for key in a.keys():
        va, vb = a[key], b[key]
        if isinstance(va, torch.Tensor):
            assert va.dtype == vb.dtype and torch.equal(va, vb), key
        else:
            assert va is vb or va == vb, key
    assert a.num_nodes == b.num_nodes and a.num_edges == b.num_edges


def variants(sd):
    """The state_dict, a perturbed copy and a float32 copy (cast into the layout's float64 vector)."""
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v + torch.randn(v.shape, generator=gen, dtype=v.dtype) if v.is_floating_point() else v
             for k, v in sd.items()}
    single = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    return [sd, noisy, single]


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_catalogue_fast_conversion(case):
    model, _, _, layout = prepare_case(case)
    c = compile_layout(layout)
    sds = variants(model.state_dict())
    plan = _plan(layout)
    for sd in sds:
        if layout.params:  # the fast path is taken
            assert plan.matches(sd) and plan.flat(sd, torch.empty(layout.num_params, dtype=plan.dtype))
        vec = graphs.flatten_state_dict(sd, layout)
        ref = _flatten_general(sd, layout)
        assert vec.dtype == ref.dtype and torch.equal(vec, ref)
        ints = graphs.flatten_int_buffers(sd, layout)
        by_vector = graphs.vector_to_graph(ref, layout, ints)
        reference = _new_graph(c, layout, by_vector.x, by_vector.edge_attr, by_vector.ints)
        assert_same_graph(by_vector, reference)
        assert_same_graph(graphs.to_graph(sd, layout), reference)
    rows = flatten_state_dicts(sds, layout)
    ref_rows = _rows_general(sds, layout, True, torch.empty_like(rows))
    assert rows.dtype == ref_rows.dtype and torch.equal(rows, ref_rows)


def small():
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(12, 2))
    return m, graphs.trace(m, torch.randn(2, 2, 4, 4))


def test_graphs_share_no_per_graph_state():
    m, layout = small()
    sd = m.state_dict()
    g1, g2 = graphs.to_graph(sd, layout), graphs.to_graph(sd, layout)
    g1.x.add_(1.0)
    g1.edge_attr.add_(1.0)
    g1.extra = torch.ones(1)
    assert "extra" not in g2.keys() and "extra" not in graphs.to_graph(sd, layout).keys()
    assert torch.equal(graphs.to_state_dict(g2)["1.weight"], sd["1.weight"])
    assert torch.equal(graphs.to_state_dict(graphs.to_graph(sd, layout))["0.weight"], sd["0.weight"])
    assert graphs.to_graph(sd, layout).layout is layout
    batch = Batch.from_data_list([g2, graphs.to_graph(sd, layout)])
    assert batch.num_graphs == 2 and batch.edge_index.shape[1] == 2 * g2.edge_index.shape[1]
    assert torch.equal(graphs.to_state_dict(batch.to_data_list()[1])["4.bias"], sd["4.bias"])


def test_fallbacks_give_the_general_result():
    m, layout = small()
    sd = m.state_dict()
    grad = {k: v.clone().requires_grad_() if v.is_floating_point() else v for k, v in sd.items()}
    assert torch.equal(graphs.flatten_state_dict(grad, layout), _flatten_general(sd, layout))
    assert not graphs.flatten_state_dict(grad, layout).requires_grad
    assert torch.equal(flatten_state_dicts([sd, grad], layout), flatten_state_dicts([sd, sd], layout))
    assert torch.equal(graphs.to_graph(grad, layout).edge_attr, graphs.to_graph(sd, layout).edge_attr)
    wrong = dict(sd)
    wrong["0.weight"] = sd["0.weight"][:, :1]
    for bad in (wrong, {k: v for k, v in sd.items() if k != "4.bias"}, {**sd, "other": torch.ones(1)}):
        with pytest.raises(graphs.LayoutMismatchError):
            graphs.to_graph(bad, layout)
        with pytest.raises(graphs.LayoutMismatchError):
            flatten_state_dicts([sd, bad], layout)
