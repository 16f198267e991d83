"""Reusable assertions for symmetry soundness, exact conversion and graph equivariance."""

from __future__ import annotations

import copy

import pytest
import torch

import graphs
from graphs.batch import rows_to_batch
from graphs.convert import graph_to_vector

SOUND_RTOL = 1e-9  # float64: relative to the output scale


def run(model, inputs, kwargs=None):
    out = model(*inputs, **(kwargs or {}))
    if hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out


def as_double(model, inputs, kwargs=None):
    m = copy.deepcopy(model).double().eval()
    def conv(t):
        return (t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t)
    return m, tuple(conv(t) for t in inputs), {k: conv(v) for k, v in (kwargs or {}).items()}


_LAYOUTS: dict = {}


def prepare_case(case):
    """A catalogue case in float64: ``(model, inputs, kwargs, layout)``; each layout is traced once per session."""
    if case.hf:
        pytest.importorskip("transformers")
    kwargs = case.kwargs() if case.kwargs else None
    model, inputs, kwargs = as_double(case.build(), case.inputs(), kwargs)
    if case.name not in _LAYOUTS:
        _LAYOUTS[case.name] = graphs.trace(model, inputs, kwargs)
    return model, inputs, kwargs, _LAYOUTS[case.name]


@torch.no_grad()
def output_error(model, sd, inputs, kwargs=None) -> float:
    """Max |f_sd(x) - f(x)| / max(1, |f(x)|)."""
    ref = run(model, inputs, kwargs)
    other = copy.deepcopy(model)
    other.load_state_dict(sd)
    out = run(other, inputs, kwargs)
    return float((out - ref).abs().max() / ref.abs().max().clamp(min=1.0))


def assert_exact_round_trip(model, layout):
    sd = model.state_dict()
    back = graphs.to_state_dict(graphs.to_graph(model, layout))
    assert list(back) == list(sd) or set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype, k
        assert back[k].shape == v.shape, k
        assert torch.equal(back[k], v), k


def assert_sound(model, layout, inputs, kwargs=None, n: int = 3, seed: int = 0, rtol: float = SOUND_RTOL):
    """Random symmetries leave float64 outputs unchanged (relative error < ``rtol``, default 1e-9)."""
    gen = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    for _ in range(n):
        perm = graphs.random_symmetry(layout, gen)
        err = output_error(model, graphs.apply_symmetry(sd, layout, perm), inputs, kwargs)
        assert err < rtol, f"symmetry changed the output by {err:.3g}"


def assert_graph_equivariant(model, layout, seed: int = 0):
    """The graph of a permuted network is the permuted graph (edges and node features)."""
    gen = torch.Generator().manual_seed(seed)
    perm = graphs.random_symmetry(layout, gen)
    g = graphs.to_graph(model, layout)
    g2 = graphs.to_graph(graphs.apply_symmetry(model.state_dict(), layout, perm), layout)
    s = graphs.node_permutation(layout, perm)  # new node j = old node s[j]
    # an edge is named by its neurons, its parameter and which part of a split block it holds
    old = {(int(a), int(b), int(p), int(c)): i for i, (a, b, p, c) in
           enumerate(zip(g.edge_index[0], g.edge_index[1], g.edge_param, g.edge_chunk, strict=True))}
    assert len(old) == g.edge_index.shape[1], "parallel edges of one parameter that hold the same slots"
    idx = torch.tensor([old[(int(s[a]), int(s[b]), int(p), int(c))] for a, b, p, c in
                        zip(g2.edge_index[0], g2.edge_index[1], g2.edge_param, g2.edge_chunk, strict=True)],
                       dtype=torch.long)
    assert torch.equal(g2.edge_attr, g.edge_attr[idx])
    assert torch.equal(g2.x, g.x[s])
    assert torch.equal(g.node_type[s], g.node_type)
    return perm, s


def graph_batch(vectors, layout, dtype=torch.float64):

    return rows_to_batch(torch.stack(list(vectors)).to(dtype), layout)


def assert_model_invariant(model, layout, vectors, seed: int = 0, atol: float = 1e-9):
    """model(graphs of permuted networks) == model(graphs), in float64; and not trivially constant."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.stack(list(vectors)).double()
    model = model.double().eval()
    with torch.no_grad():
        ref = model(graph_batch(rows, layout))
        perm_rows = torch.stack([r[graphs.symmetry_index(layout, graphs.random_symmetry(layout, gen))] for r in rows])
        assert not torch.equal(perm_rows, rows)
        out = model(graph_batch(perm_rows, layout))
        assert (out - ref).abs().max() <= atol * max(1.0, float(ref.abs().max())), float((out - ref).abs().max())
        # sensitivity: different networks give different outputs
        other = model(graph_batch(rows.flip(0), layout))
        assert (other - ref).abs().max() > 1e-6


def assert_editor_equivariant(model, layout, vectors, seed: int = 0, atol: float = 1e-9):
    """edit(permuted network) == permuted edit(network), weights compared as flat vectors."""

    gen = torch.Generator().manual_seed(seed)
    rows = torch.stack(list(vectors)).double()
    model = model.double().eval()
    perms = [graphs.symmetry_index(layout, graphs.random_symmetry(layout, gen)) for _ in rows]
    with torch.no_grad():
        out = [graph_to_vector(g) for g in model(graph_batch(rows, layout)).to_data_list()]
        out_p = [graph_to_vector(g) for g in
                 model(graph_batch([r[p] for r, p in zip(rows, perms, strict=True)], layout)).to_data_list()]
    for o, op, p in zip(out, out_p, perms, strict=True):
        assert (op - o[p]).abs().max() <= atol * max(1.0, float(o.abs().max()))
    return out
