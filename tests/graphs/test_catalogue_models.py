"""Sanity checks of the symmetry catalogue itself (no tracer needed)."""

from __future__ import annotations

import pytest
import torch

from tests.graphs.catalogue import ALL_CASES, CASES, HF_CASES, Case


def _run(case: Case, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    model = case.build().to(dtype)
    inputs = tuple(x.to(dtype) if x.is_floating_point() else x for x in case.inputs())
    kwargs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in (case.kwargs or dict)().items()}
    with torch.no_grad():
        out = model(*inputs, **kwargs)
    return out if isinstance(out, tuple) else (out,)



def _skip_without_transformers(case: Case) -> None:
    if case.hf:
        pytest.importorskip("transformers")


def test_catalogue_metadata() -> None:
    names = [c.name for c in ALL_CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    assert len(CASES) >= 30
    assert all(c.hf for c in HF_CASES) and not any(c.hf for c in CASES)
    for c in ALL_CASES:
        assert list(c.group_sizes) == sorted(c.group_sizes), f"{c.name}: group_sizes not sorted"
        assert all(s > 1 for s in c.group_sizes), f"{c.name}: size-1 groups must be dropped"
        assert c.permutable_neurons >= 0 and c.note
        assert (c.permutable_neurons == 0) == (not c.group_sizes), f"{c.name}: neurons iff groups"
        assert c.rtol == 1e-9 or "rtol" in c.note, f"{c.name}: a looser rtol needs a reason in note"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_case_builds_and_runs(case: Case) -> None:
    _skip_without_transformers(case)
    model = case.build()
    assert not model.training, "build() must return an eval-mode model"
    params = list(model.parameters())
    assert params and all(p.dtype == torch.float32 for p in params)
    out32 = _run(case, torch.float32)
    assert all(torch.isfinite(o).all() for o in out32)
    # deterministic: a second build and run gives identical weights and outputs
    assert all(torch.equal(a, b) for a, b in zip(out32, _run(case, torch.float32), strict=True))
    out64 = _run(case, torch.float64)
    assert all(o.dtype == torch.float64 for o in out64)
    for a, b in zip(out32, out64, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_case_state_is_deterministic(case: Case) -> None:
    _skip_without_transformers(case)
    sd1, sd2 = case.build().state_dict(), case.build().state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_tied_weights_are_one_parameter() -> None:
    lm = next(c for c in CASES if c.name == "tiny_lm_tied").build()
    assert lm.lm_head.weight is lm.tok.weight
    assert "lm_head.weight" not in dict(lm.named_parameters())  # named_parameters dedups the tied tensor


def test_norm_running_stats_were_trained() -> None:
    for case in CASES:
        for name, buf in case.build().named_buffers():
            if name.endswith("running_var"):
                assert not torch.allclose(buf, torch.ones_like(buf)), f"{case.name}.{name} untouched"
