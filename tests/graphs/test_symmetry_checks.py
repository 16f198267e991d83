"""``graphs.apply_symmetry`` (and the other symmetry functions) refuse anything that is not a symmetry."""

import pytest
import torch
from torch import nn

import graphs


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 4)
        self.fc3 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = MLP().double()
    x = torch.randn(7, 3, dtype=torch.float64)
    layout = graphs.trace(model, (x,))
    hidden = {g.size: g.id for g in layout.permutable_groups()}
    fixed = next(g for g in layout.groups if g.fixed)
    return model, x, layout, hidden, fixed


def _apply(model, layout, perm):
    return graphs.apply_symmetry(model.state_dict(), layout, perm)


def test_a_valid_symmetry_keeps_the_function_and_really_permutes(net):
    model, x, layout, hidden, _ = net
    perm = {hidden[5]: torch.tensor([4, 2, 0, 1, 3]), hidden[4]: torch.tensor([1, 0, 3, 2])}
    twin = MLP().double()
    twin.load_state_dict(_apply(model, layout, perm))
    with torch.no_grad():
        assert torch.allclose(twin(x), model(x), atol=1e-12, rtol=0)
    assert not torch.equal(twin.fc1.weight, model.fc1.weight)  # sensitivity: the weights did move
    assert torch.equal(twin.fc1.weight, model.fc1.weight[[4, 2, 0, 1, 3]])
    # the same permutation applied to one layer alone is not a symmetry: the function changes
    broken = dict(model.state_dict())
    broken["fc1.weight"] = broken["fc1.weight"][[4, 2, 0, 1, 3]]
    twin.load_state_dict(broken)
    with torch.no_grad():
        assert (twin(x) - model(x)).abs().max() > 1e-3
    # lists and numpy-style integer keys are accepted too
    vec = graphs.flatten_state_dict(model, layout)
    by_index = vec[graphs.symmetry_index(layout, {hidden[5]: [4, 2, 0, 1, 3]})]
    assert torch.equal(by_index, graphs.flatten_state_dict(_apply(model, layout, {hidden[5]: [4, 2, 0, 1, 3]}),
                                                           layout))


@pytest.mark.parametrize("case, fragments", [
    ("short", ("group {g5}", "shape (4,)", "expected (5,)")),
    ("long", ("group {g5}", "shape (6,)", "expected (5,)")),
    ("2d", ("group {g5}", "shape (1, 5)", "expected (5,)")),
    ("repeat", ("group {g5}", "not a permutation of 0..4", "repeated entries [1]")),
    ("range", ("group {g5}", "not a permutation of 0..4", "out-of-range entries [7]")),
    ("float", ("group {g5}", "dtype torch.float32", "size 5")),
    ("unknown", ("group 99", "has groups 0..")),
    ("negative", ("group -1", "has groups 0..")),
    ("key", ("'fc1'", "not a group id")),
    ("fixed", ("group {fixed}", "is fixed", "only the identity")),
])
def test_non_symmetries_are_refused_naming_the_group(net, case, fragments):
    model, _, layout, hidden, fixed = net
    g5 = hidden[5]
    perm = {
        "short": {g5: torch.tensor([0, 1, 2, 3])},
        "long": {g5: torch.arange(6)},
        "2d": {g5: torch.arange(5)[None]},
        "repeat": {g5: torch.tensor([0, 1, 1, 2, 3])},
        "range": {g5: torch.tensor([0, 1, 2, 3, 7])},
        "float": {g5: torch.arange(5.0)},
        "unknown": {99: torch.arange(3)},
        "negative": {-1: torch.arange(3)},
        "key": {"fc1": torch.arange(5)},
        "fixed": {fixed.id: torch.roll(torch.arange(fixed.size), 1)},
    }[case]
    for fn in (lambda: _apply(model, layout, perm), lambda: graphs.symmetry_index(layout, perm),
               lambda: graphs.node_permutation(layout, perm)):
        with pytest.raises(ValueError) as info:
            fn()
        message = str(info.value)
        for f in fragments:
            assert f.format(g5=g5, fixed=fixed.id) in message, message


def test_the_identity_of_a_fixed_group_is_allowed_and_changes_nothing(net):
    model, _, layout, _, fixed = net
    out = _apply(model, layout, {fixed.id: torch.arange(fixed.size)})
    assert all(torch.equal(out[k], v) for k, v in model.state_dict().items())


def test_a_state_dict_missing_tensors_is_a_layout_mismatch(net):
    model, _, layout, hidden, _ = net
    sd = {k: v for k, v in model.state_dict().items() if k != "fc2.weight"}
    with pytest.raises(graphs.LayoutMismatchError, match="'fc2.weight'"):
        graphs.apply_symmetry(sd, layout, {hidden[5]: torch.arange(5)})
    with pytest.raises(ValueError, match="mapping"):
        graphs.apply_symmetry(model.state_dict(), layout, [torch.arange(5)])
