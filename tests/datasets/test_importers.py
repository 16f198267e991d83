"""Importers on tiny fixtures written in the exact published layouts (see importer_fixtures.py)."""

import json

import numpy as np
import pytest
import torch

import graphs
from datasets import cli
from datasets.cli import main
from datasets.errors import ZooError
from datasets.hdf5 import ZooReader
from datasets.importers import checkpoint_dirs, inr_folder, small_cnn_zoo
from datasets.importers.common import load_torch_lenient
from datasets.zoo.models import Siren, SmallCNN
from tests.datasets.importer_fixtures import (
    DWSNetsINR,
    model_zoo_factory,
    tf_cnn_forward,
    tf_variables,
    wild_park_factory,
    write_cnn_wild_park_runs,
    write_dwsnets_mnist_inrs,
    write_model_zoos_runs,
    write_neural_graphs_fmnist_inrs,
    write_small_cnn_zoo,
)


def _state_dicts(path):
    """Every model of a zoo file as (state_dict, labels dict)."""
    out = []
    with ZooReader(path) as r:
        names = r.label_names
        columns = {n: r.labels(n) for n in names}
        for i in range(r.num_models):
            fp, row, ints = r.read(i)
            sd = graphs.unflatten_state_dict(torch.from_numpy(row), r.layout(fp), torch.from_numpy(ints))
            out.append((sd, {n: columns[n][i] for n in names}))
    return out


# ------------------------------------------------------------------ Small CNN Zoo


@pytest.mark.parametrize("gz,index_column", [(True, True), (False, False)])
def test_small_cnn_zoo_round_trip_is_exact(tmp_path, gz, index_column):
    weights, rows = write_small_cnn_zoo(tmp_path / "mnist", gz=gz, index_column=index_column)
    assert small_cnn_zoo.detect(tmp_path / "mnist")
    n = small_cnn_zoo.import_small_cnn_zoo(tmp_path / "mnist", tmp_path / "zoo.h5")
    assert n == len(weights) == 9
    models = _state_dicts(tmp_path / "zoo.h5")
    for i, (sd, labels) in enumerate(models):
        tf = tf_variables(weights[i])
        for layer, name in enumerate(("conv2d", "conv2d_1", "conv2d_2")):
            k = torch.from_numpy(tf[f"sequential/{name}/kernel:0"]).float()
            assert torch.equal(sd[f"convs.{layer}.weight"], k.permute(3, 2, 0, 1))  # [kh,kw,in,out] -> [out,in,kh,kw]
            assert torch.equal(sd[f"convs.{layer}.bias"], torch.from_numpy(tf[f"sequential/{name}/bias:0"]).float())
        assert torch.equal(sd["head.weight"], torch.from_numpy(tf["sequential/dense/kernel:0"]).float().T)
        assert torch.equal(sd["head.bias"], torch.from_numpy(tf["sequential/dense/bias:0"]).float())
        # every published value appears exactly once: the import is a permutation of the row
        flat = np.sort(np.concatenate([v.numpy().ravel() for v in sd.values()]))
        assert np.array_equal(flat, np.sort(weights[i]))
        assert labels["test_acc"] == pytest.approx(rows[i]["test_accuracy"])
        assert labels["epoch"] == rows[i]["step"]
        assert labels["config.activation"] == rows[i]["config.activation"]
        assert labels["run"] == i // 3
        assert labels["source"] == f"mnist/weights.npy:{i}"


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "selu"])
def test_small_cnn_zoo_imported_network_computes_the_tf_network(tmp_path, activation):
    weights, _ = write_small_cnn_zoo(tmp_path / "z", n_runs=1, steps=(86,))
    small_cnn_zoo.import_small_cnn_zoo(tmp_path / "z", tmp_path / "zoo.h5")
    (sd, _), = _state_dicts(tmp_path / "zoo.h5")
    model = SmallCNN(1, 10, width=16, depth=3, activation=activation, stride=2, padding=0).double()
    model.load_state_dict({k: v.double() for k, v in sd.items()})
    x = np.random.default_rng(1).uniform(-1, 1, size=(3, 28, 28, 1))  # NHWC, as TF sees it
    ours = model(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    torch.testing.assert_close(ours, tf_cnn_forward(weights[0], x, activation), rtol=0, atol=1e-10)


def test_small_cnn_zoo_selects_steps_and_groups_runs(tmp_path):
    write_small_cnn_zoo(tmp_path / "z", n_runs=10, steps=(0, 86))
    n = small_cnn_zoo.import_small_cnn_zoo(tmp_path / "z", tmp_path / "zoo.h5", steps=[86])
    assert n == 10
    with ZooReader(tmp_path / "zoo.h5") as r:
        assert set(r.labels("epoch")) == {86}
        runs = r.labels("run")
        seen = {}
        for name in r.split_names:
            for i in r.split(name):
                assert seen.setdefault(runs[i], name) == name  # a run never straddles splits


def test_small_cnn_zoo_errors_name_the_problem(tmp_path):
    with pytest.raises(ZooError, match="weights.npy, layout.csv"):
        small_cnn_zoo.import_small_cnn_zoo(tmp_path, tmp_path / "zoo.h5")
    write_small_cnn_zoo(tmp_path / "z", n_runs=2)
    np.save(tmp_path / "z" / "weights.npy", np.zeros((5, 4970), np.float32))
    with pytest.raises(ZooError, match="must correspond one to one"):
        small_cnn_zoo.import_small_cnn_zoo(tmp_path / "z", tmp_path / "zoo.h5")
    np.save(tmp_path / "z" / "weights.npy", np.zeros((6, 4000), np.float32))
    with pytest.raises(ZooError, match="tile"):
        small_cnn_zoo.import_small_cnn_zoo(tmp_path / "z", tmp_path / "zoo.h5")


# ------------------------------------------------------------------ INR folders


def _siren_outputs(sd, coords):
    m = Siren(2, sd["seq.0.weight"].shape[0], len(sd) // 2, sd[f"seq.{len(sd) // 2 - 1}.weight"].shape[0])
    m.load_state_dict(sd)
    return m(coords)


def test_dwsnets_inr_folder_round_trip_labels_and_splits(tmp_path):
    written = write_dwsnets_mnist_inrs(tmp_path / "dataset")
    root = tmp_path / "dataset" / "mnist-inrs"
    assert inr_folder.detect(root)
    n = inr_folder.import_inr_folder(root, tmp_path / "zoo.h5")
    assert n == len(written) == 12
    coords = torch.rand(10, 2) * 2 - 1
    for sd, labels in _state_dicts(tmp_path / "zoo.h5"):
        ref_sd, label, split = written[labels["source"]]
        assert sd.keys() == ref_sd.keys() and all(torch.equal(sd[k], ref_sd[k]) for k in sd)
        assert labels["class"] == label and labels["split"] == split
        ref = DWSNetsINR()
        ref.load_state_dict(ref_sd)
        assert torch.equal(_siren_outputs(sd, coords), ref(coords))  # same function as DWSNets' INR
    with ZooReader(tmp_path / "zoo.h5") as r:
        split_labels = r.labels("split")
        for name in ("train", "val", "test"):
            assert set(split_labels[r.split(name)]) == {name}  # the published split is the stored split


def test_neural_graphs_inr_split_list_with_label_inside(tmp_path):
    written = write_neural_graphs_fmnist_inrs(tmp_path / "dataset")
    n = inr_folder.import_inr_folder(tmp_path / "dataset" / "fmnist_inrs", tmp_path / "zoo.h5")
    assert n == len(written)
    for sd, labels in _state_dicts(tmp_path / "zoo.h5"):
        ref_sd, label, split = written[labels["source"]]
        assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd) and "label" not in sd
        assert labels["class"] == label and labels["split"] == split


def test_inr_folder_without_split_file_parses_classes(tmp_path):
    written = write_dwsnets_mnist_inrs(tmp_path / "d", per_class=1)
    (tmp_path / "d" / "mnist-inrs" / "mnist_splits.json").unlink()
    inr_folder.import_inr_folder(tmp_path / "d" / "mnist-inrs", tmp_path / "zoo.h5")
    models = _state_dicts(tmp_path / "zoo.h5")
    assert sorted(lab["source"] for _, lab in models) == sorted(written)
    assert all(lab["class"] == written[lab["source"]][1] for _, lab in models)


def test_inr_folder_rejects_non_siren_checkpoints(tmp_path):
    (tmp_path / "m_1_2").mkdir()
    torch.save({"fc.weight": torch.zeros(3, 2)}, tmp_path / "m_1_2" / "a.pth")
    with pytest.raises(ZooError, match="datasets convert"):
        inr_folder.import_inr_folder(tmp_path, tmp_path / "zoo.h5")


# ------------------------------------------------------------------ checkpoint folders


def test_model_zoos_run_folders(tmp_path):
    written = write_model_zoos_runs(tmp_path / "zoo_mnist", n_runs=2, epochs=2)
    assert checkpoint_dirs.detect(tmp_path / "zoo_mnist")
    n = checkpoint_dirs.import_checkpoint_dirs(tmp_path / "zoo_mnist", tmp_path / "zoo.h5", model_zoo_factory,
                                               torch.zeros(1, 1, 28, 28))
    assert n == len(written) == 6
    x = torch.randn(4, 1, 28, 28)
    for sd, labels in _state_dicts(tmp_path / "zoo.h5"):
        ref_sd, epoch, run = written[labels["source"]]
        assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd) and sd.keys() == ref_sd.keys()
        assert labels["epoch"] == epoch and labels["run"] == run
        assert labels["config.model::nlin"] == ("tanh", "relu")[run]
        if epoch == 0:  # saved before the first report: no metrics
            assert np.isnan(labels["test_acc"])
        else:  # the result.json line whose training_iteration is the checkpoint number
            assert labels["test_acc"] == pytest.approx(0.1 + 0.2 * epoch - 0.01 * run)
        m = model_zoo_factory({"model::channels_in": 1, "model::nlin": labels["config.model::nlin"]})
        m.load_state_dict(sd)
        ref = model_zoo_factory({"model::channels_in": 1, "model::nlin": labels["config.model::nlin"]})
        ref.load_state_dict(ref_sd)
        assert torch.equal(m(x), ref(x))


def test_cnn_wild_park_checkpoints_load_without_running_pickled_code(tmp_path):
    written = write_cnn_wild_park_runs(tmp_path / "park")
    obj = load_torch_lenient(next((tmp_path / "park").rglob("checkpoint.pt")))
    assert type(obj["config"]).__name__ == "DictConfig" and obj["config"].state["_content"]["n_classes"] == 10
    n = checkpoint_dirs.import_checkpoint_dirs(tmp_path / "park", tmp_path / "zoo.h5", wild_park_factory,
                                               torch.zeros(1, 1, 8, 8))
    assert n == len(written) == 4
    for sd, labels in _state_dicts(tmp_path / "zoo.h5"):
        ref_sd, it, run = written[labels["source"]]
        assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd)
        assert labels["epoch"] == it and labels["test_acc"] == pytest.approx(0.2 * it + 0.01 * run)
        assert json.loads(labels["config.model.channels"]) == [1, 4, 6]


def test_checkpoint_dirs_factory_mismatch_names_the_checkpoint(tmp_path):
    write_model_zoos_runs(tmp_path / "z", n_runs=1, epochs=0)
    with pytest.raises(graphs.LayoutMismatchError, match="checkpoint_000000/checkpoints"):
        checkpoint_dirs.import_checkpoint_dirs(tmp_path / "z", tmp_path / "zoo.h5", wild_park_factory,
                                               torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("module,argv", [
    (small_cnn_zoo, ["import-small-cnn-zoo", "{src}", "{out}"]),
    (inr_folder, ["import-inr-folder", "{src}", "{out}"]),
    (checkpoint_dirs, ["import-checkpoint-dirs", "{src}", "{out}", "--model", "x:y", "--example-input-shape", "1,1"]),
])
def test_import_commands_report_bad_input_in_one_line(tmp_path, capsys, module, argv):

    if module not in cli.COMMANDS:
        pytest.skip(f"{module.__name__} is not registered in datasets.cli yet")
    (tmp_path / "empty").mkdir()
    args = [a.format(src=tmp_path / "empty", out=tmp_path / "zoo.h5") for a in argv]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_convert_hands_external_formats_to_their_importers(tmp_path):

    write_small_cnn_zoo(tmp_path / "mnist", gz=True, index_column=True)
    assert main(["convert", str(tmp_path / "mnist"), str(tmp_path / "cnn.h5"), "--quiet"]) == 0
    write_dwsnets_mnist_inrs(tmp_path / "dataset")
    assert main(["convert", str(tmp_path / "dataset" / "mnist-inrs"), str(tmp_path / "inr.h5"), "--quiet"]) == 0
    with ZooReader(tmp_path / "cnn.h5") as r:
        assert len(r) == 9
    with ZooReader(tmp_path / "inr.h5") as r:
        assert len(r) == 12
    assert main(["convert", str(tmp_path / "mnist"), str(tmp_path / "x.h5"), "--labels", "l.csv"]) == 2
