import functools

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch_geometric.data import Batch

import graphs
from graphs.batch import gather_features
from graphs.demo import example_networks
from metanets import ModelConfig, build_model, model_from_checkpoint
from metanets.baselines import (
    ChainSpec,
    StatGBT,
    batch_to_rows,
    split_params,
    statnn_feature_names,
    statnn_features,
)
from tests.equivariance import assert_editor_equivariant, assert_model_invariant, graph_batch


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread avoids OpenMP barrier stalls (10x+ slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _nets():
    """Small chains (tiny dense MLP, pooled CNN, CNN flattened into a linear layer) with example inputs."""
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(6, 3))
    flat = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(12, 5))
    inr = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))  # 1 output
    return {"mlp": (mlp, torch.randn(2, 1, 4, 4)), "cnn": (cnn, torch.randn(2, 1, 8, 8)),
            "cnn_flatten": (flat, torch.randn(2, 1, 6, 6)), "inr": (inr, torch.randn(5, 2))}


@functools.cache
def _layout(arch: str) -> graphs.Layout:
    if arch in ("resnet", "transformer"):
        model, inputs = example_networks()[arch]
        return graphs.trace(model, inputs)
    net, x = _nets()[arch]
    return graphs.trace(net, (x,))


def zoo(arch: str, n: int = 3, scales=None):
    """``n`` random networks of ``arch`` (weights N(0, scale^2)) as flat vectors."""
    layout = _layout(arch)
    net = example_networks()[arch][0] if arch in ("resnet", "transformer") else _nets()[arch][0]
    vecs = []
    for i in range(n):
        torch.manual_seed(i)
        for p in net.parameters():
            nn.init.normal_(p, std=0.5 if scales is None else float(scales[i]))
        vecs.append(graphs.flatten_state_dict(net, layout))
    return layout, vecs


def config(name, task, layout, out_dim=2, **options) -> ModelConfig:
    cfg = ModelConfig(name=name, task=task, out_dim=out_dim, num_norm_keys=len(layout.params), normalize_by="param",
                      baseline=dict(options), layout_json=layout.to_json())
    cfg.gmn.width, cfg.gmn.max_layers = graphs.compile_layout(layout).width, len(layout.params)
    return cfg


def make(name, task, layout, out_dim=2, **options):
    torch.manual_seed(0)
    return build_model(config(name, task, layout, out_dim, **options))


def nonzero_heads(model):
    for p in model.parameters():  # break the identity-init of edit heads so the test is not trivial
        if p.abs().sum() == 0:
            nn.init.normal_(p, std=0.1)
    return model


# ----------------------------------------------------------------------------- plumbing
@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "transformer"])
def test_batch_to_rows_matches_graph_to_vector(arch):
    layout, vecs = zoo(arch)
    for batch in (graph_batch(vecs, layout), Batch.from_data_list([graphs.vector_to_graph(v, layout) for v in vecs])):
        rows = batch_to_rows(batch, layout)
        want = torch.stack([graphs.graph_to_vector(g) for g in batch.to_data_list()])
        assert torch.equal(rows, want) and torch.equal(rows, torch.stack(vecs).double().to(rows.dtype))
    x, edge_attr = gather_features(rows, layout, width=12)  # padded back, as a dataset's feature_width does
    batch.edge_attr, batch.x = edge_attr, x
    assert torch.equal(batch_to_rows(batch, layout), rows)
    shapes = [tuple(t.shape) for t in split_params(rows, layout)]
    assert shapes == [(len(vecs), *p.shape) for p in layout.params]


def test_batch_of_another_layout_is_a_clear_error():
    layout, vecs = zoo("cnn")
    with pytest.raises(graphs.LayoutMismatchError, match="built for"):
        batch_to_rows(graph_batch(vecs, layout), _layout("mlp"))


@pytest.mark.parametrize("arch", ["mlp", "cnn", "cnn_flatten", "inr"])
def test_chain_spec_packs_layers(arch):
    layout, vecs = zoo(arch)
    spec = ChainSpec.from_layout(layout)
    rows = torch.stack(vecs)
    ws, bs = spec.pack(rows)
    sd = graphs.unflatten_state_dict(vecs[0], layout)
    for lay, w in zip(spec.layers, ws, strict=True):  # W_i[b, s, j, k] = weight[j, k, *kernel][s]
        ref = sd[lay.weight].reshape(lay.n_out, lay.n_in, -1).permute(2, 0, 1)
        assert torch.equal(w[0], ref.reshape(lay.k, lay.n_out, lay.n_in))
    assert torch.equal(spec.unpack(ws, bs), rows)
    assert [b is None for b in bs] == [lay.bias is None for lay in spec.layers]
    assert sum(lay.bias is not None for lay in spec.layers) == sum(p.role == "bias" for p in layout.params)



def test_nfn_rejects_residual_network_clearly():
    layout, _ = zoo("resnet")
    with pytest.raises(ValueError, match=r"NFN needs a plain MLP/CNN chain; layer 'blocks\.0\.c2\.weight'"):
        make("nfn", "predict", layout)


def test_options_and_tasks_are_checked():
    layout, _ = zoo("mlp")
    with pytest.raises(ValueError, match="unknown options"):
        make("statnn", "predict", layout, widht=3)
    with pytest.raises(ValueError, match="not 'edit'"):
        make("deepsets", "edit", layout)
    cfg = ModelConfig(name="mlp", layout_json=None)
    with pytest.raises(ValueError, match="layout_json"):
        build_model(cfg)


# ----------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("arch", ["mlp", "cnn", "cnn_flatten"])
@pytest.mark.parametrize("name", ["nfn", "statnn", "deepsets"])
def test_baseline_is_invariant_and_sensitive(name, arch):
    layout, vecs = zoo(arch)
    assert_model_invariant(make(name, "predict", layout, hidden=8), layout, vecs)


@pytest.mark.parametrize("name", ["statnn", "deepsets"])
def test_layout_free_of_chain_baselines_on_resnet(name):
    layout, vecs = zoo("resnet")
    assert_model_invariant(make(name, "classify", layout, hidden=8), layout, vecs)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "cnn_flatten", "inr"])
def test_nfn_editor_is_equivariant_and_sensitive(arch):
    layout, vecs = zoo(arch)
    model = make("nfn", "edit", layout, hidden=8)
    rows = torch.stack(vecs).double()
    same = model.double()(graph_batch(rows, layout))  # zero-initialized output layer: the identity
    assert torch.equal(batch_to_rows(same, layout), rows)
    out = assert_editor_equivariant(nonzero_heads(model), layout, vecs)
    assert not torch.allclose(out[0], rows[0])
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_flat_mlp_is_not_invariant():
    """The point of this baseline: permuting hidden neurons (the same function) changes its prediction."""
    layout, vecs = zoo("mlp")
    model = make("mlp", "predict", layout).double().eval()
    rows = torch.stack(vecs).double()
    perm = graphs.symmetry_index(layout, graphs.random_symmetry(layout, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        ref, out = model(graph_batch(rows, layout)), model(graph_batch(rows[:, perm], layout))
    assert (out - ref).abs().max() > 1e-3


# ----------------------------------------------------------------------------- statistics
def test_statnn_features_are_the_documented_statistics():
    layout, vecs = zoo("cnn")
    feats = statnn_features(graph_batch(vecs, layout), layout)
    names = statnn_feature_names(layout)
    assert feats.shape == (len(vecs), len(names))
    w = graphs.unflatten_state_dict(vecs[1], layout)["2.weight"].double().numpy().reshape(-1)
    want = [w.mean(), w.var(), *np.quantile(w, [0, 0.25, 0.5, 0.75, 1])]
    col = names.index("2.weight:mean")
    assert np.allclose(feats[1, col:col + 7].numpy(), want, rtol=1e-12, atol=1e-12)


def test_statgbt_fits_per_tensor_statistics():
    scales = torch.linspace(0.2, 1.0, 48)
    layout, vecs = zoo("cnn", 48, scales)
    X = statnn_features(graph_batch(vecs, layout), layout)
    y = scales.log().numpy()
    labels = (y > np.median(y)).astype(int)
    with threadpool_limits(1):  # torch's and sklearn's OpenMP pools thrash on a busy 2-core machine
        pred = StatGBT("predict", max_iter=50, min_samples_leaf=4).fit(X, y).predict(X)
        got = StatGBT("classify", max_iter=20, min_samples_leaf=4).fit(X, labels).predict(X)
    assert pred.shape == (48, 1) and ((pred[:, 0] - y) ** 2).mean() < 0.1 * y.var()
    assert (got == labels).mean() > 0.9


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["nfn", "statnn", "mlp", "deepsets"])
def test_a_few_steps_lower_the_loss(name, tmp_path):
    scales = torch.rand(32, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.2
    layout, vecs = zoo("cnn", 32, scales)
    y = scales.log()[:, None]
    y = (y - y.mean()) / y.std()
    cfg = config(name, "predict", layout, out_dim=1, hidden=16)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = graph_batch(vecs, layout, torch.float32)
    model.normalizer.fit([batch])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = nn.functional.mse_loss(model.model(batch), y)  # the wrapped model: standardized units
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # a checkpoint rebuilds the model, normalization included, and scores raw graphs
    ckpt = {"model_config": cfg.to_dict(), "model": model.state_dict()}
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(ckpt)(batch), model.eval()(batch))
