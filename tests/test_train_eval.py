"""train.py and eval.py end to end on tiny zoos: predict, classify, edit, scoring user checkpoints."""

import json
import os

import pytest
import torch

import eval as eval_script
import graphs
import tasks
import train as train_script
from datasets import ZooReader
from datasets.zoo.build import build_zoo
from datasets.zoo.models import Siren
from datasets.zoo.recipes import get_recipe


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "inr.h5"
    build_zoo(get_recipe("digits-siren", n_images=40), path, progress=False)
    return str(path)


def _train(tmp_path, *args):
    out = str(tmp_path / "run")
    summary = train_script.main([*args, "--out", out, "--hidden", "16", "--layers", "2", "--quiet",
                                 "--threads", "1"])
    return out, summary


def write_cnn_factory(folder) -> str:
    """A ``nets.py`` in ``folder`` whose ``make()`` builds the cnn_zoo architecture; returns ``FILE.py:make``."""
    (folder / "nets.py").write_text(
        "import torch\nfrom datasets.zoo.models import SmallCNN\n"
        "def make():\n    return SmallCNN(in_channels=1, num_classes=10, width=8, depth=3, padding=1)\n"
        "def example_inputs():\n    return (torch.randn(2, 1, 8, 8),)\n")
    return f"{folder / 'nets.py'}:make"


def test_predict_train_eval_and_score_files(cnn_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", cnn_zoo, "--epochs", "2")
    assert summary["steps"] > 0 and "kendall_tau" in summary["best_val"]
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert {"model", "optimizer", "model_config", "train_config", "step"} <= set(ckpt)
    res = eval_script.main([os.path.join(out, "best.pt")])
    on_disk = json.load(open(os.path.join(out, "metrics.json")))
    assert {"kendall_tau", "r2", "rmse"} <= set(on_disk) and on_disk["rmse"] == res["rmse"]
    assert os.path.isfile(os.path.join(out, "test_predict.png"))
    # score user checkpoints of the same architecture (DESIGN: load_checkpoint + a graph of each file)
    with ZooReader(cnn_zoo) as r:
        layout = r.layout()
        sd = graphs.unflatten_state_dict(torch.from_numpy(r.read(0)[1]), layout)
    os.makedirs(tmp_path / "mine")
    graphs.save_checkpoint(sd, tmp_path / "mine" / "a.safetensors")
    preds = eval_script.main([os.path.join(out, "best.pt"), "--predict", str(tmp_path / "mine"),
                              "--model", write_cnn_factory(tmp_path)])["predictions"]
    assert len(preds) == 1 and 0.0 <= list(preds.values())[0][0] <= 1.5


def test_classify_inrs(inr_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", inr_zoo, "--task", "classify", "--epochs", "2")
    assert 0.0 <= summary["best_val"]["accuracy"] <= 1.0
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["model_config"]["gmn"]["probe_dim"] == 256  # INRs: 256 probes by default, on a coordinate grid
    grid = ckpt["model"]["probe.probes"]  # a classifier has no target-scaling wrapper
    assert grid.shape == (256, 2) and grid.abs().max() <= 1.5  # started on the 16x16 grid over [-1, 1]
    res = eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    assert "accuracy" in res


def test_edit_inrs_writes_loadable_checkpoints(inr_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", inr_zoo, "--task", "edit", "--edit", "contrast", "--epochs", "8",
                          "--batch-size", "4", "--lr", "3e-3")
    res = eval_script.main([os.path.join(out, "best.pt")])
    assert res["mse"] < res["mse_identity"]  # training moved the edited INRs towards the target
    files = sorted(os.listdir(os.path.join(out, "edited")))
    assert files
    siren = Siren(hidden=32, depth=3)
    siren.load_state_dict(graphs.load_checkpoint(os.path.join(out, "edited", files[0])))


def test_gmn_options_reach_the_checkpoint(cnn_zoo, tmp_path):
    out, _ = _train(tmp_path, "--data", cnn_zoo, "--epochs", "1", "--aggr", "mean,min", "--edge-depth", "1",
                    "--readout-stats")
    model = tasks.load_model(os.path.join(out, "best.pt"))
    conv = model.model.backbone.convs[0]
    assert conv.reductions == ("mean", "min") and len(conv.edge_net.post) == 2  # LayerNorm, SiLU: depth 1
    assert model.model.stats is not None and eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])["rmse"] > 0


def test_classify_inrs_with_input_warps(inr_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", inr_zoo, "--task", "classify", "--epochs", "1", "--warp", "0.1",
                          "--probes", "16")
    assert 0.0 <= summary["best_val"]["accuracy"] <= 1.0
    assert torch.load(os.path.join(out, "best.pt"), weights_only=True)["train_config"]["warp"] == 0.1


def test_bad_input_to_train_and_eval_is_a_clear_error(cnn_zoo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_script.main(["--task", "predict"])  # no --data
    assert "--data ZOO.h5 is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--task", "regress"])
    assert "choose predict, classify, edit, ghn or neumeta" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--dist-backend", "mpi"])
    assert "invalid choice: 'mpi'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--edge-depth", "3"])
    assert "--edge-depth 3: choose 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--model", "statnn", "--readout-stats", "--out", str(tmp_path / "r")])
    assert "--readout-stats needs a graph model" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option of another task is named, not ignored
        train_script.main(["--data", cnn_zoo, "--meta-batch", "4"])
    assert "--meta-batch is an option of --task ghn, not of --task predict" in capsys.readouterr().err
    with pytest.raises(ValueError, match="coordinate networks such as INRs only"):
        train_script.main(["--data", cnn_zoo, "--warp", "0.1", "--epochs", "1", "--out", str(tmp_path / "w")])
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--epochs", "0"])
    assert "--epochs 0: train for at least 1 epoch" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        eval_script.main([str(tmp_path / "junk.pt")])
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="is not a weightgraph metanetwork checkpoint"):
        eval_script.main([str(tmp_path / "foreign.pt")])
    with pytest.raises(ValueError, match="no checkpoint at"):
        eval_script.main([str(tmp_path / "missing.pt")])
