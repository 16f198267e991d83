"""--canonicalize through train.py and eval.py: every split (and --predict files) aligned to stored references."""

import os

import pytest
import torch

import eval as eval_script
import graphs
import train as train_script
from datasets import ZooDataset, ZooReader
from datasets.transforms import Canonicalize
from tests.test_train_eval import _train  # the same tiny runner; the cnn_zoo fixture is conftest's


def test_canonicalized_mlp_trains_evaluates_and_scores_files(cnn_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", cnn_zoo, "--model", "mlp", "--canonicalize", "--epochs", "2")
    assert summary["steps"] > 0
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["train_config"]["canonicalize"] is True
    with ZooReader(cnn_zoo) as r:
        layout = r.layout()
        vec = torch.from_numpy(r.read(0)[1])
    refs = ckpt["canonical"]["references"]
    assert set(refs) == {layout.fingerprint} and refs[layout.fingerprint].shape == (layout.num_params,)
    # the stored references are the ones training computed from the training split
    fresh = Canonicalize.from_dataset(ZooDataset(cnn_zoo, "train", labels=[]), refine=20)
    torch.testing.assert_close(refs[layout.fingerprint], fresh.references[layout.fingerprint], rtol=0, atol=0)
    res = eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    assert -1 <= res["kendall_tau"] <= 1

    # a user's checkpoint and a permuted copy of it get the same score: both are aligned to the reference
    sd = graphs.unflatten_state_dict(vec, layout)
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(3))
    os.makedirs(tmp_path / "mine")
    graphs.save_checkpoint(sd, tmp_path / "mine" / "a.safetensors")
    graphs.save_checkpoint(graphs.apply_symmetry(sd, layout, perm), tmp_path / "mine" / "b.safetensors")
    (tmp_path / "nets.py").write_text(
        "import torch\nfrom datasets.zoo.models import SmallCNN\n"
        "def make():\n    return SmallCNN(in_channels=1, num_classes=10, width=8, depth=3, padding=1)\n"
        "def example_inputs():\n    return (torch.randn(2, 1, 8, 8),)\n")
    preds = eval_script.main([os.path.join(out, "best.pt"), "--predict", str(tmp_path / "mine"),
                              "--model", f"{tmp_path / 'nets.py'}:make"])["predictions"]
    a, b = (v[0] for _, v in sorted(preds.items()))
    assert a == pytest.approx(b, rel=1e-6, abs=1e-7)


def test_without_canonicalize_a_flat_mlp_sees_permuted_copies_as_different(cnn_zoo, tmp_path):
    """Sensitivity of the test above: the same files through an MLP trained without --canonicalize."""
    out, _ = _train(tmp_path, "--data", cnn_zoo, "--model", "mlp", "--epochs", "2")
    assert "canonical" not in torch.load(os.path.join(out, "best.pt"), weights_only=True)
    with ZooReader(cnn_zoo) as r:
        layout = r.layout()
        sd = graphs.unflatten_state_dict(torch.from_numpy(r.read(0)[1]), layout)
    os.makedirs(tmp_path / "mine")
    graphs.save_checkpoint(sd, tmp_path / "mine" / "a.safetensors")
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(3))
    graphs.save_checkpoint(graphs.apply_symmetry(sd, layout, perm), tmp_path / "mine" / "b.safetensors")
    (tmp_path / "nets.py").write_text(
        "from datasets.zoo.models import SmallCNN\n"
        "def make():\n    return SmallCNN(in_channels=1, num_classes=10, width=8, depth=3, padding=1)\n")
    preds = eval_script.main([os.path.join(out, "best.pt"), "--predict", str(tmp_path / "mine"),
                              "--model", f"{tmp_path / 'nets.py'}:make", "--input-shape", "2,1,8,8"])["predictions"]
    a, b = (v[0] for _, v in sorted(preds.items()))
    assert abs(a - b) > 1e-4


def test_canonicalize_refusals(cnn_zoo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--model", "mlp", "--canonicalize", "--augment",
                           "--out", str(tmp_path / "r")])
    assert "undoes --canonicalize" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--canonicalize", "--canonical-refine", "-1",
                           "--out", str(tmp_path / "r")])
    assert "--canonical-refine -1" in capsys.readouterr().err
