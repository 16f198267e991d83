"""--ema: the moving average of the weights is what is validated, selected, saved and resumed."""

import os

import pytest
import torch

import eval as eval_script
import train as train_script
from tasks.ema import WeightEMA
from tests.test_train_eval import _train  # the same tiny runner; the cnn_zoo fixture is conftest's


def test_weight_ema_math_and_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, 0.9)
    w0 = model[0].weight.detach().clone()
    ema.update(model)  # the first update copies
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, 0.9 * w0 + 0.1 * (w0 + 1.0), rtol=0, atol=1e-6)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 5.0))  # buffers copied, not averaged
    assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked)
    off = WeightEMA(model, 0.0)
    assert not off.enabled and off.module is model and off.checkpoint_entries() == {}
    with pytest.raises(ValueError, match="--ema 1.0"):
        WeightEMA(model, 1.0)


def test_ema_run_saves_the_average_and_resumes(cnn_zoo, tmp_path, capsys):
    out, _ = _train(tmp_path, "--data", cnn_zoo, "--epochs", "2", "--ema", "0.9")
    last = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert {"ema", "trained_model"} <= set(last)
    # the saved model is the average, not the raw weights (sensitivity: they differ after training)
    raw, avg = last["trained_model"], last["model"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    assert {k: v for k, v in last["ema"].items() if k.startswith("module.")}.keys() == {f"module.{k}" for k in avg}
    res = eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    assert -1 <= res["kendall_tau"] <= 1
    train_script.main(["--data", cnn_zoo, "--epochs", "3", "--ema", "0.9", "--out", out, "--hidden", "16",
                       "--layers", "2", "--quiet", "--threads", "1", "--resume"])
    resumed = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert len(resumed["history"]) == 3 and int(resumed["ema"]["n_averaged"]) > int(last["ema"]["n_averaged"])
    with pytest.raises(SystemExit):
        train_script.main(["--data", cnn_zoo, "--ema", "1.5", "--out", str(tmp_path / "bad")])
    assert "--ema 1.5" in capsys.readouterr().err
