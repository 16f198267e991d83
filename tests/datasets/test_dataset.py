"""ZooDataset, ZooLoader and the row transforms."""

import pickle

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from zoo_models import CNN_INPUT, make_cnn, make_mlp

import graphs
from datasets import (
    LabelError,
    Normalize,
    RandomSymmetry,
    SplitSpec,
    ZooDataset,
    ZooError,
    ZooFormatError,
    ZooLoader,
    ZooReader,
    ZooWriter,
    orbit_ids,
    write_stats,
)
from datasets.resplit import resplit


def assert_same_batch(a: Batch, b: Batch) -> None:
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), key
        elif key != "layout":
            assert x == y, key
    assert [g.fingerprint for g in a.layout] == [g.fingerprint for g in b.layout]


def test_items_are_graphs_with_labels(cnn_zoo):
    path, models = cnn_zoo
    ds = ZooDataset(path, split=None, labels=("acc", "epoch", "source"))
    assert len(ds) == 20 and ds.y_names == ("acc", "epoch")
    g = ds[7]
    assert isinstance(g, graphs.ParamGraph)
    assert g.y.shape == (1, 2) and g.y.dtype == torch.float32
    assert torch.allclose(g.y, torch.tensor([[0.57, 3.0]]))
    assert g.epoch.dtype == torch.long and g.epoch.tolist() == [3]
    assert g.source == "m7.pt" and g.zoo_index.tolist() == [7]
    sd = graphs.to_state_dict(g)
    for k, v in models[7].state_dict().items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
    assert ds[-1].zoo_index.tolist() == [19]
    with pytest.raises(IndexError):
        ds[20]


def test_split_selection_and_default_labels(cnn_zoo):
    path, _ = cnn_zoo
    ds = ZooDataset(path, split="test")
    with ZooReader(path) as r:
        assert list(ds.indices) == list(r.split("test"))
    assert ds.label_names == ("acc", "epoch", "run")  # numeric columns by default
    with pytest.raises(ZooError, match="python -m datasets split"):
        ZooDataset(path, split="holdout")
    with ZooWriter(path, "a") as w:
        w.add(make_cnn(50), ds.layouts[ds.fingerprints[0]],
              labels={"acc": 1.0, "epoch": 0, "run": 9, "source": "x", "x": 1.0})
    with pytest.raises(LabelError, match="clashes with a graph field"):
        ZooDataset(path, labels=("x",))


def test_pickles_and_works_with_pyg_workers(cnn_zoo):
    path, _ = cnn_zoo
    ds = ZooDataset(path, split=None)
    ds[0]  # opens a handle in this process; pickling must drop it
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3].edge_attr, ds[3].edge_attr)
    seen = []
    for batch in DataLoader(ds, batch_size=6, shuffle=True, num_workers=2):
        assert batch.y.shape == (batch.num_graphs, 3)
        seen += batch.zoo_index.tolist()
    assert sorted(seen) == list(range(20))


def test_zoo_loader_gives_pyg_batches(tmp_path, cnn_zoo, mlp_layout):
    path, _ = cnn_zoo
    ds = ZooDataset(path, split=None, labels=("acc", "epoch", "source"))
    pos = [5, 2, 17, 2]
    assert_same_batch(ds.get_batch(pos), Batch.from_data_list([ds[i] for i in pos]))
    got = [b.zoo_index.tolist() for b in ZooLoader(ds, batch_size=8, shuffle=True, num_workers=2,
                                                   generator=torch.Generator().manual_seed(0))]
    assert [len(b) for b in got] == [8, 8, 4] and sorted(sum(got, [])) == list(range(20))
    for batch in ZooLoader(ds, batch_size=7):
        assert_same_batch(batch, Batch.from_data_list([ds[int(i)] for i in batch.zoo_index]))
    mixed = tmp_path / "mixed.h5"  # several architectures in one batch: collated item by item
    with ZooWriter(mixed) as w:
        for i in range(4):
            w.add(make_mlp(i), mlp_layout, labels={"acc": float(i)})
            w.add(make_cnn(i), ds.layouts[ds.fingerprints[0]], labels={"acc": float(i)})
    mds = ZooDataset(mixed, split=None, feature_width=9)
    assert mds[0].x.shape[1] == mds[1].edge_attr.shape[1] == 9
    assert_same_batch(mds.get_batch([0, 1, 2]), Batch.from_data_list([mds[0], mds[1], mds[2]]))


def test_random_symmetry_keeps_the_function(cnn_zoo):
    path, models = cnn_zoo
    ds = ZooDataset(path, split=None, transform=RandomSymmetry(torch.Generator().manual_seed(0)))
    x = torch.randn(*CNN_INPUT[0].shape)
    g = ds[4]
    sd = graphs.to_state_dict(g)
    assert not torch.equal(sd["conv1.weight"], models[4].conv1.weight)
    permuted = make_cnn(0)
    permuted.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(permuted(x), models[4](x), atol=1e-5, rtol=0)
    batch = ZooLoader(ds, batch_size=5).__iter__().__next__()
    assert batch.num_graphs == 5


def test_normalization_statistics(cnn_zoo):
    path, _ = cnn_zoo
    with pytest.raises(ZooError, match="python -m datasets stats"):
        Normalize.from_zoo(path)
    stats = write_stats(path)
    ds = ZooDataset(path, split="train")
    layout = ds.layouts[ds.fingerprints[0]]
    with ZooReader(path) as r:
        rows = r.read_rows(layout.fingerprint, r.model_row[r.split("train")])[0].astype(np.float64)
    st = stats[layout.fingerprint]
    sd = rows.std(0)
    assert np.allclose(st.mean["element"], rows.mean(0))
    assert np.allclose(st.std["element"], np.where(sd > 1e-12, sd, 1.0))  # constant entries (BN init) get 1
    assert (sd <= 1e-12).any()
    p = layout.param("conv2.weight")
    block = rows[:, p.offset:p.offset + p.numel]
    assert np.allclose(st.mean["tensor"][p.offset], block.mean()) and np.allclose(st.std["tensor"][p.offset],
                                                                                  block.std())
    ids = orbit_ids(layout)
    idx = graphs.symmetry_index(layout, graphs.random_symmetry(layout)).numpy()
    assert np.array_equal(ids[idx], ids)  # orbits are unions of symmetry cycles ...
    assert len(np.unique(ids[p.offset:p.offset + p.numel])) == 9  # ... and as coarse as the symmetry allows
    for kind in ("tensor", "orbit", "element"):
        norm = Normalize.from_zoo(path, kind)
        vec = torch.from_numpy(rows[0]).float()
        assert torch.allclose(norm.inverse(norm(vec, layout), layout), vec, atol=1e-6)
    normed = ZooDataset(path, split="train", transform=Normalize.from_zoo(path, "orbit"))
    flat = torch.stack([graphs.graph_to_vector(normed[i]) for i in range(len(normed))]).double()
    by_orbit = np.bincount(ids, flat.mean(0).numpy()) / np.bincount(ids)
    assert np.abs(by_orbit).max() < 1e-5
    resplit(path, SplitSpec(seed=5))
    with pytest.raises(ZooError, match="no normalization statistics"):
        Normalize.from_zoo(path)


def test_replaced_or_stale_files_are_noticed(cnn_zoo, cnn_layout):
    path, _ = cnn_zoo
    ds = ZooDataset(path, split="train")
    with ZooWriter(path, "a") as w:  # explicit splits go stale when models are added
        w.set_splits({"train": np.arange(20), "val": np.arange(0), "test": np.arange(0)}, SplitSpec())
    with ZooWriter(path, "a") as w:
        w.add(make_cnn(30), cnn_layout, labels={"acc": 0.1, "epoch": 1, "run": 9, "source": "new.pt"})
    with pytest.warns(UserWarning, match="covers the first 20 of 21"):
        ZooDataset(path, split="train")
    ds[0]  # an appended zoo is the same zoo
    with ZooWriter(path, "w") as w:
        w.add(make_cnn(1), cnn_layout)
    fresh = pickle.loads(pickle.dumps(ds))
    with pytest.raises(ZooFormatError, match="replaced by a different zoo"):
        fresh[0]


@pytest.mark.slow
def test_spawned_workers_open_their_own_handles(cnn_zoo):
    path, _ = cnn_zoo
    ds = ZooDataset(path, split=None)
    ds[0]
    for loader in (DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context="spawn"),
                   ZooLoader(ds, batch_size=5, num_workers=2, multiprocessing_context="spawn")):
        assert sorted(sum((b.zoo_index.tolist() for b in loader), [])) == list(range(20))
