"""datasets.archs: the architecture space, its sampler, the archs file format and ``python -m datasets archs``."""

import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import graphs
from datasets.archs import (
    CELL_OPS,
    DEEP_DEPTHS,
    DENSE_NODES,
    FAMILIES,
    ID_DEPTHS,
    ID_NODES,
    ID_WIDTHS,
    OOD_KINDS,
    ArchSpec,
    ArchsReader,
    build_module,
    param_cap,
    sample_archs,
    sample_spec,
    trace_all,
    write_archs,
)
from datasets.cli import main
from datasets.errors import ZooError, ZooFormatError

SHAPES = [(1, 8, 8), (1, 40)]
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def assert_traces_and_round_trips(spec: ArchSpec) -> graphs.Layout:
    model = build_module(spec)
    assert model(spec.example_input(3)).shape == (3, spec.num_classes)
    layout = graphs.trace(model, (spec.example_input(),))
    sd = model.state_dict()
    back = graphs.to_state_dict(graphs.to_graph(model, layout))
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k
    assert ArchSpec.from_json(spec.to_json()) == spec
    return layout


def all_ops_cell(shape, wiring, norm) -> ArchSpec:
    """A cell that uses every op, single and summed inputs, and two stages."""
    genotype = tuple((op, (j - 1,) if j % 2 else (0, j - 1)) for j, op in enumerate(CELL_OPS, start=1))
    return ArchSpec("cell", shape, 10, (8, 16), norm=norm, cells_per_stage=(1, 1), genotype=genotype, wiring=wiring,
                    stem_kernel=5)


@pytest.mark.parametrize("shape", SHAPES, ids=["digits", "mnist1d"])
@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_nets_build_trace_and_round_trip(shape, family):
    rng = np.random.default_rng(7)
    for _ in range(2):
        spec = sample_spec(rng, shape, 10, families=(family,))
        assert spec.family == family and spec.input_shape == shape
        layout = assert_traces_and_round_trips(spec)
        assert not any("opaque" in g.kinds for g in layout.groups)  # every op has a symmetry rule


@pytest.mark.parametrize("shape", SHAPES, ids=["digits", "mnist1d"])
@pytest.mark.parametrize("wiring,norm", [("sum", "bn"), ("concat", "gn"), ("concat", "none")])
def test_every_cell_op_wiring_and_norm_traces(shape, wiring, norm):
    assert_traces_and_round_trips(all_ops_cell(shape, wiring, norm))


@pytest.mark.parametrize("shape", SHAPES, ids=["digits", "mnist1d"])
def test_vit_variants_trace(shape):
    for cls_token, norm, heads in [(True, "ln", 3), (False, "none", 2)]:
        assert_traces_and_round_trips(ArchSpec("vit", shape, 10, (24,), norm=norm, activation="gelu", patch=4,
                                               heads=heads, blocks=2, cls_token=cls_token))


def test_build_is_deterministic_in_structure():
    spec = all_ops_cell((1, 8, 8), "concat", "bn")
    a, b = build_module(spec).state_dict(), build_module(spec).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


def test_spec_json_round_trip_and_errors():
    spec = all_ops_cell((1, 40), "sum", "bn")
    text = spec.to_json()
    assert ArchSpec.from_json(text) == spec and ArchSpec.from_json(text).to_json() == text
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ZooError, match="unknown ArchSpec fields"):
        ArchSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(ZooError, match="missing"):
        ArchSpec.from_dict({"family": "mlp", "input_shape": [1, 8, 8]})
    assert ArchSpec("mlp", [1, 8, 8], 10, [16]) == ArchSpec("mlp", (1, 8, 8), 10, (16,))  # lists become tuples
    with pytest.raises(ZooError, match="not an ArchSpec JSON"):
        ArchSpec.from_json("{not json")
    with pytest.raises(ZooError, match="unknown cell op"):
        ArchSpec("cell", (1, 8, 8), 10, (8,), norm="bn", cells_per_stage=(1,), genotype=(("conv7x7", (0,)),))
    with pytest.raises(ZooError, match="earlier nodes"):
        ArchSpec("cell", (1, 8, 8), 10, (8,), norm="bn", cells_per_stage=(1,), genotype=(("conv3x3", (1,)),))
    with pytest.raises(ZooError, match="must divide"):
        ArchSpec("vit", (1, 8, 8), 10, (16,), norm="ln", patch=2, heads=3, blocks=1)
    with pytest.raises(ZooError, match="reductions"):
        ArchSpec("cell", (1, 8, 8), 10, (8, 8, 8, 8, 8), norm="bn", cells_per_stage=(1,) * 5,
                 genotype=(("conv3x3", (0,)),))


def test_sampling_is_deterministic_and_splits_are_disjoint():
    specs, splits = sample_archs(20, (1, 8, 8), 10, seed=3, n_ood=3)
    specs2, splits2 = sample_archs(20, (1, 8, 8), 10, seed=3, n_ood=3)
    assert [s.to_json() for s in specs] == [s.to_json() for s in specs2]
    assert all(np.array_equal(splits[k], splits2[k]) for k in splits)
    assert len({s.to_json() for s in specs}) == len(specs) == 20 + 3 * len(OOD_KINDS)
    assert list(splits) == ["train", "val", "test", *OOD_KINDS]
    assert [len(splits[k]) for k in ("train", "val", "test")] == [16, 2, 2]
    every = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(every), np.arange(len(specs)))  # disjoint and covering
    other, _ = sample_archs(20, (1, 8, 8), 10, seed=4, n_ood=3)
    assert [s.to_json() for s in other] != [s.to_json() for s in specs]
    fewer_ood, _ = sample_archs(20, (1, 8, 8), 10, seed=3, n_ood=1)
    assert [s.to_json() for s in fewer_ood[:20]] == [s.to_json() for s in specs[:20]]


def test_sampling_bad_input():
    with pytest.raises(ZooError, match="at least 10"):
        sample_archs(5, (1, 8, 8), 10)
    with pytest.raises(ZooError, match="families"):
        sample_archs(10, (1, 8, 8), 10, families=("cell", "resnet"))
    with pytest.raises(ZooError, match="include the 'cell' family"):
        sample_spec(np.random.default_rng(0), (1, 8, 8), 10, kind="dense", families=("mlp",))
    _, splits = sample_archs(10, (1, 40), 10, n_ood=2, families=("mlp", "vit"))
    assert len(splits["dense"]) == 0 and len(splits["wide"]) == 2


def has_norm(spec: ArchSpec) -> bool:
    return any(isinstance(m, NORM_LAYERS) for m in build_module(spec).modules())


@pytest.mark.parametrize("shape", SHAPES, ids=["digits", "mnist1d"])
def test_ood_kinds_have_their_defining_property(shape):
    rng = np.random.default_rng(0)
    ids = [sample_spec(rng, shape, 10) for _ in range(60)]
    assert {s.family for s in ids} == set(FAMILIES)
    for s in ids:  # the ID ranges
        assert s.max_width <= ID_WIDTHS[s.family][1] and s.depth <= ID_DEPTHS[s.family][1]
        assert s.num_nodes <= ID_NODES[1] and has_norm(s)
        assert sum(p.numel() for p in build_module(s).parameters()) <= param_cap(shape)
    draw = {kind: [sample_spec(rng, shape, 10, kind) for _ in range(15)] for kind in OOD_KINDS}
    assert all(s.max_width > ID_WIDTHS[s.family][1] for s in draw["wide"])
    assert all(s.depth > ID_DEPTHS[s.family][1] and s.depth >= DEEP_DEPTHS[s.family][0] for s in draw["deep"])
    assert all(s.family == "cell" and s.num_nodes > ID_NODES[1] and s.num_nodes >= DENSE_NODES[0]
               for s in draw["dense"])
    assert all(s.norm == "none" and not has_norm(s) for s in draw["bnfree"])
    # depth is visible in the built module too: cells, hidden linears, transformer blocks
    id_max = {"cell": ID_DEPTHS["cell"][1], "mlp": ID_DEPTHS["mlp"][1] + 1, "vit": ID_DEPTHS["vit"][1]}
    counted = {"cell": "Cell", "mlp": "Linear", "vit": "TransformerBlock"}
    for s in draw["deep"]:
        n = sum(type(m).__name__ == counted[s.family] for m in build_module(s).modules())
        assert n > id_max[s.family]


def test_cli_writes_a_file_the_reader_reads_back(tmp_path, capsys):
    out = tmp_path / "archs.h5"
    rc = main(["archs", "10", str(out), "--ood", "2", "--seed", "1", "--quiet"])
    stdout = capsys.readouterr().out
    assert rc == 0 and "train 8 val 1 test 1 wide 2 deep 2 dense 2 bnfree 2" in stdout and "params" in stdout
    specs, splits = sample_archs(10, (1, 8, 8), 10, seed=1, n_ood=2)
    with ArchsReader(out) as r:
        assert len(r) == 18 and r.input_shape == (1, 8, 8) and r.num_classes == 10 and r.dataset == "digits"
        assert r.split_names == tuple(splits) and all(np.array_equal(r.split(k), splits[k]) for k in splits)
        for i in range(len(r)):
            assert r.spec(i) == specs[i]
            traced = graphs.trace(r.build(i), (specs[i].example_input(),))
            assert r.layout(i) == traced and r.layout(i).to_dict() == traced.to_dict()
            assert r.num_params(i) == traced.num_params
        assert r.layout(0) is r.layout(0)  # cached
        with pytest.raises(ZooError, match="no split"):
            r.split("ood")


def test_mnist1d_file_round_trip(tmp_path):
    specs, splits = sample_archs(10, (1, 40), 10, seed=0, n_ood=0, families=("cell", "vit"))
    layouts = trace_all(specs)
    write_archs(tmp_path / "m.h5", specs, splits, layouts, {"dataset": "mnist1d", "seed": 0})
    with ArchsReader(tmp_path / "m.h5") as r:
        assert r.dataset == "mnist1d" and r.input_shape == (1, 40) and r.seed == 0
        assert [r.spec(i) for i in range(len(r))] == specs
        assert [r.layout(i) for i in range(len(r))] == layouts
        assert len(r.split("wide")) == 0


@pytest.mark.parametrize("argv,fragment", [
    (["archs", "5", "OUT"], "at least 10"),
    (["archs", "10", "OUT", "--families", "cell,resnet"], "resnet"),
    (["archs", "10", "OUT", "--input-shape", "3,x", "--num-classes", "10"], "malformed"),
    (["archs", "10", "OUT", "--input-shape", "3,32,32"], "--num-classes"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, fragment):
    argv = [str(tmp_path / "o.h5") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and fragment in err
    assert not os.path.exists(tmp_path / "o.h5")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    specs, splits = sample_archs(10, (1, 8, 8), 10, seed=5, n_ood=0, families=("mlp",))
    path = tmp_path_factory.mktemp("archs") / "small.h5"
    layouts = trace_all(specs)
    write_archs(path, specs, splits, layouts, {"dataset": "digits", "seed": 5})
    return path, specs, splits, layouts


def test_bad_files_give_zoo_errors(tmp_path, small):
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ZooFormatError, match="not an HDF5 file"):
        ArchsReader(tmp_path / "text.h5")
    with pytest.raises(FileNotFoundError, match="python -m datasets archs"):
        ArchsReader(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "weightgraph-zoo"
    with pytest.raises(ZooFormatError, match="not an architecture file"):
        ArchsReader(tmp_path / "other.h5")
    newer = tmp_path / "newer.h5"
    newer.write_bytes(small[0].read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(ZooFormatError, match="version 2.*upgrade weightgraph"):
        ArchsReader(newer)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(small[0].read_bytes())
    with h5py.File(broken, "r+") as f:
        del f["layouts"][f["fingerprints"].asstr()[0]]
    with pytest.raises(ZooFormatError, match="not stored"):
        ArchsReader(broken)


def test_reader_pickles_without_its_handle(small):
    path, specs, _, layouts = small
    with ArchsReader(path) as r:
        copy = pickle.loads(pickle.dumps(r))
    assert copy.layout(3) == layouts[3] and copy.spec(3) == specs[3]
    copy.close()


class ExplodingLayout:
    """Looks like a Layout until it is written."""

    fingerprint, num_params = "0" * 20, 1

    def to_json(self) -> str:
        raise RuntimeError("disk on fire")


def test_interrupted_write_keeps_the_existing_file(small):
    path, specs, splits, layouts = small
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_archs(path, specs, splits, [*layouts[:-1], ExplodingLayout()], {"dataset": "digits", "seed": 5})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary or lock file left behind
    with ArchsReader(path) as r:
        assert [r.spec(i) for i in range(len(r))] == specs and r.layout(9) == layouts[9]
