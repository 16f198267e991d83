"""graphs.canonicalize / canonical_reference and the zoo row transform datasets.transforms.Canonicalize."""

import h5py
import numpy as np
import pytest
import torch

import graphs
from datasets import ZooDataset
from datasets.cli import main as datasets_main
from datasets.hdf5 import ZooReader
from datasets.loader import make_loader
from datasets.transforms import Canonicalize
from datasets.zoo.models import SmallCNN
from graphs.align import weight_matching
from tests.equivariance import output_error, prepare_case
from tests.graphs.catalogue import ALL_CASES
from tests.graphs.test_align import _independent


def _case(name):
    return next(c for c in ALL_CASES if c.name == name)


def _orbit(sd, layout, n, seed):
    """``n`` random neuron permutations of ``sd`` (each the same function)."""
    gen = torch.Generator().manual_seed(seed)
    return [graphs.apply_symmetry(sd, layout, graphs.random_symmetry(layout, gen)) for _ in range(n)]


@pytest.mark.parametrize("name", ["resnet_two_stage", "attention_sdpa", "conv1d_bn_grouped"])
def test_permuted_copies_become_one_network_of_the_same_function(name):
    model, inputs, kwargs, layout = prepare_case(_case(name))
    sd = model.state_dict()
    copies = _orbit(sd, layout, 3, seed=2)
    # sensitivity: the copies really differ position by position
    assert any(not torch.equal(copies[0][p.name], copies[1][p.name]) for p in layout.params)
    aligned, ref = graphs.canonicalize(copies, layout, reference=_independent(sd))
    for a, c in zip(aligned, copies, strict=True):
        assert output_error(model, a, inputs, kwargs) < 1e-10  # the function of each copy is kept
        assert output_error(model, c, inputs, kwargs) < 1e-10
    for p in layout.params:
        assert torch.equal(aligned[0][p.name], aligned[1][p.name])
        assert torch.equal(aligned[0][p.name], aligned[2][p.name])


def test_canonical_reference_rounds():
    model, _inputs, _kwargs, layout = prepare_case(_case("resnet_two_stage"))
    sd = model.state_dict()
    nets = [_independent(sd, seed=s) for s in range(4)]
    first = graphs.canonical_reference(nets, layout, refine=0)
    assert all(torch.equal(first[k], nets[0][k]) for k in sd)
    ref = graphs.canonical_reference(nets, layout, refine=1)
    # one round: the mean of the networks aligned to the first
    aligned = [graphs.apply_symmetry(s, layout, weight_matching(nets[0], s, layout, orbit_invariant=True))
               for s in nets]
    for p in layout.params:
        if sd[p.name].is_floating_point():
            want = torch.stack([a[p.name].double() for a in aligned]).mean(0).to(sd[p.name].dtype)
            torch.testing.assert_close(ref[p.name], want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least one network"):
        graphs.canonical_reference([], layout)
    with pytest.raises(ValueError, match="refine"):
        graphs.canonical_reference(nets, layout, refine=-1)
    with pytest.raises(graphs.LayoutMismatchError):
        graphs.canonicalize([{"x": torch.zeros(1)}], layout)


def test_row_transform_maps_an_orbit_to_one_row_and_keeps_the_function(cnn_zoo):
    ds = ZooDataset(cnn_zoo, "train", labels=[])
    layout = next(iter(ds.layouts.values()))
    canon = Canonicalize.from_dataset(ds, refine=1, sample=8)
    assert set(canon.references) == {layout.fingerprint}
    assert canon.references[layout.fingerprint].shape == (layout.num_params,)
    params, _ = ds._open()
    vec = torch.from_numpy(params[layout.fingerprint][int(ds._row[3])])
    gen = torch.Generator().manual_seed(0)
    permuted = [vec[graphs.symmetry_index(layout, graphs.random_symmetry(layout, gen))] for _ in range(3)]
    assert not torch.equal(permuted[0], permuted[1])  # sensitivity: different rows of one orbit
    out = [canon(v, layout) for v in permuted]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    # the aligned row is a permutation of the row (same multiset) and runs the same function
    assert torch.equal(out[0].sort().values, vec.sort().values)
    net = SmallCNN(in_channels=1, num_classes=10, width=8, depth=3, padding=1).double().eval()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)

    def run(v):
        net.load_state_dict({k: t.double() if t.is_floating_point() else t
                             for k, t in graphs.unflatten_state_dict(v, layout).items()})
        with torch.no_grad():
            return net(x)

    torch.testing.assert_close(run(out[0]), run(vec), rtol=1e-12, atol=1e-12)
    # state round trip (what a checkpoint stores) gives the same transform
    again = Canonicalize.from_state(canon.state())
    assert torch.equal(again(permuted[2], layout), out[0])
    other = Canonicalize({"deadbeef": torch.zeros(3)})
    with pytest.raises(ValueError, match="no canonical reference"):
        other(vec, layout)


def test_warm_fills_the_cache_and_batches_use_it(cnn_zoo):
    ds = ZooDataset(cnn_zoo, "val", labels=[])
    canon = Canonicalize.from_dataset(ZooDataset(cnn_zoo, "train", labels=[]), refine=0)
    canon.warm(ds)
    assert len(canon._cache) == len(np.unique(np.asarray(ds._row)))
    ds.transform = canon
    batch = ds.get_batch(range(len(ds)))
    one = ds[0]
    torch.testing.assert_close(batch.get_example(0).edge_attr, one.edge_attr, rtol=0, atol=0)


def test_canonicalize_command_writes_an_aligned_copy(cnn_zoo, tmp_path, capsys):

    out = tmp_path / "canon.h5"
    before = open(cnn_zoo, "rb").read()
    assert datasets_main(["canonicalize", cnn_zoo, str(out)]) == 0
    assert open(cnn_zoo, "rb").read() == before  # the input is untouched
    with ZooReader(cnn_zoo) as a, ZooReader(str(out)) as b:
        assert a.num_models == b.num_models and a.label_names == b.label_names
        assert (a.model_program == b.model_program).all()
        assert a.split_names == b.split_names and all((a.split(s) == b.split(s)).all() for s in a.split_names)
        layout = a.layout()
        fp = layout.fingerprint
        rows = np.arange(a.num_models)
        pa, pb = a.read_rows(fp, rows)[0], b.read_rows(fp, rows)[0]
        canon = Canonicalize.from_dataset(ZooDataset(cnn_zoo, "train", labels=[]))
        for i in range(a.num_models):  # each row is its own orbit member closest to the reference
            assert np.array_equal(pb[i], canon(torch.from_numpy(pa[i]), layout).numpy())
            assert np.array_equal(np.sort(pa[i]), np.sort(pb[i]))
        assert not np.array_equal(pa, pb)  # sensitivity: rows did move
        with h5py.File(out, "r") as f:
            torch.testing.assert_close(torch.from_numpy(f[f"arch/{fp}/canonical_reference"][()]),
                                       canon.references[fp], rtol=0, atol=0)
    # a new file policy: refused when it exists, the input as output refused, a missing split named
    assert datasets_main(["canonicalize", cnn_zoo, str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert datasets_main(["canonicalize", cnn_zoo, cnn_zoo, "--overwrite"]) == 2
    assert "the output is the input" in capsys.readouterr().err
    assert datasets_main(["canonicalize", cnn_zoo, str(tmp_path / "x.h5"), "--reference-split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_canonicalized_batches_from_worker_processes_match(cnn_zoo):

    ds = ZooDataset(cnn_zoo, "val", labels=[])
    canon = Canonicalize.from_dataset(ZooDataset(cnn_zoo, "train", labels=[]), refine=0)
    canon.warm(ds)
    ds.transform = canon
    here = next(iter(make_loader(ds, 4)))
    there = next(iter(make_loader(ds, 4, workers=1)))  # the transform (and its cache) travels to the worker
    assert torch.equal(here.edge_attr, there.edge_attr) and torch.equal(here.x, there.x)
    plain = next(iter(make_loader(ZooDataset(cnn_zoo, "val", labels=[]), 4)))
    assert not torch.equal(plain.edge_attr, here.edge_attr)  # sensitivity: canonicalization moved the rows
