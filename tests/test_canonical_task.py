"""--canonicalize through train.py and eval.py: every split (and --predict files) aligned to stored references."""

import os

import pytest
import torch

import eval as eval_script
import graphs
import train as train_script
from datasets import ZooDataset, ZooReader
from datasets.transforms import Canonicalize
from tests.test_train_eval import _train, write_cnn_factory  # the cnn_zoo fixture is conftest's


def test_canonicalized_mlp_trains_evaluates_and_scores_files(cnn_zoo, tmp_path):
    out, summary = _train(tmp_path, "--data", cnn_zoo, "--model", "mlp", "--canonicalize", "--epochs", "2")
    assert summary["steps"] > 0
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["train_config"]["canonicalize"] is True
    with ZooReader(cnn_zoo) as r:
        layout = r.layout()
    refs = ckpt["canonical"]["references"]
    assert set(refs) == {layout.fingerprint} and refs[layout.fingerprint].shape == (layout.num_params,)
    # the stored references are the ones training computed from the training split
    fresh = Canonicalize.from_dataset(ZooDataset(cnn_zoo, "train", labels=[]), refine=20)
    torch.testing.assert_close(refs[layout.fingerprint], fresh.references[layout.fingerprint], rtol=0, atol=0)
    res = eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    assert -1 <= res["kendall_tau"] <= 1

    # a user's checkpoint and a permuted copy of it get the same score: both are aligned to the reference
    a, b = _score_a_network_and_its_permuted_copy(out, cnn_zoo, tmp_path)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-7)


def test_without_canonicalize_a_flat_mlp_sees_permuted_copies_as_different(cnn_zoo, tmp_path):
    """Sensitivity of the test above: the same files through an MLP trained without --canonicalize."""
    out, _ = _train(tmp_path, "--data", cnn_zoo, "--model", "mlp", "--epochs", "2")
    assert "canonical" not in torch.load(os.path.join(out, "best.pt"), weights_only=True)
    a, b = _score_a_network_and_its_permuted_copy(out, cnn_zoo, tmp_path)
    assert abs(a - b) > 1e-4


def _score_a_network_and_its_permuted_copy(out: str, zoo: str, tmp_path) -> tuple[float, float]:
    """``eval.py --predict`` scores of a zoo network and of a random neuron permutation of it (same function)."""
    with ZooReader(zoo) as r:
        layout = r.layout()
        sd = graphs.unflatten_state_dict(torch.from_numpy(r.read(0)[1]), layout)
    os.makedirs(tmp_path / "mine")
    graphs.save_checkpoint(sd, tmp_path / "mine" / "a.safetensors")
    perm = graphs.random_symmetry(layout, torch.Generator().manual_seed(3))
    graphs.save_checkpoint(graphs.apply_symmetry(sd, layout, perm), tmp_path / "mine" / "b.safetensors")
    preds = eval_script.main([os.path.join(out, "best.pt"), "--predict", str(tmp_path / "mine"),
                              "--model", write_cnn_factory(tmp_path)])["predictions"]
    a, b = (v[0] for _, v in sorted(preds.items()))
    return a, b


def test_canonicalize_refusals(cnn_zoo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--model", "mlp", "--canonicalize", "--augment",
                           "--out", str(tmp_path / "r")])
    assert "undoes --canonicalize" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--canonicalize", "--canonical-refine", "-1",
                           "--out", str(tmp_path / "r")])
    assert "--canonical-refine -1" in capsys.readouterr().err
