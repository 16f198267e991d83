"""train.py / eval.py on bad input and faults: one clear line, nothing silently wrong, nothing lost."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
import yaml

import eval as eval_script
import tasks
import train as train_script
from datasets.zoo.build import build_zoo
from datasets.zoo.recipes import get_recipe
from graphs.cli import run_cli
from metanets import model_from_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--hidden", "8", "--layers", "1", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "cnn.h5"
    build_zoo(get_recipe("digits-cnn-demo", n_runs=8), path, progress=False)
    return str(path)


@pytest.fixture(scope="module")
def run(zoo, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "gmn")
    train_script.main(["--data", zoo, "--epochs", "2", "--out", out, *TINY])
    return out


def cli(capsys, script, *args):
    """Run a script's main as its ``__main__`` does (``run_cli``); returns (exit code, stderr)."""
    capsys.readouterr()
    try:
        code = run_cli({"train.py": train_script.main, "eval.py": eval_script.main}[script], list(args))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    return code, capsys.readouterr().err


def test_a_run_writes_its_log_config_curves_and_checksummed_checkpoints(run):
    for name in ("best.pt", "last.pt", "config.yaml", "log.csv", "curves.png", "train_summary.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    rows = open(os.path.join(run, "log.csv")).read().splitlines()
    assert rows[0].startswith("epoch,loss,") and len(rows) == 3  # header + 2 epochs
    ckpt = tasks.read_checkpoint(os.path.join(run, "best.pt"))
    assert len(ckpt["checksum"]) == 64 and ckpt["train_config"]["data"] == os.path.abspath(ckpt["train_config"]["data"])


def test_damaged_checkpoints_are_refused_with_one_line(run, tmp_path):
    ckpt = torch.load(os.path.join(run, "best.pt"), weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["model"][name].view(-1)[0] += 1e-3  # one weight changed, checksum kept: a flipped bit
    torch.save(ckpt, tmp_path / "flipped.pt")
    with pytest.raises(ValueError, match="is damaged"):
        tasks.read_checkpoint(str(tmp_path / "flipped.pt"))
    data = open(os.path.join(run, "best.pt"), "rb").read()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    proc = subprocess.run([sys.executable, "eval.py", str(tmp_path / "half.pt")], capture_output=True, text=True,
                          cwd=ROOT)  # once as a user runs it: a process, its exit code, its stderr
    code, err = proc.returncode, proc.stderr
    assert code == 2 and err.startswith("error: ") and "is not a readable checkpoint" in err and "Traceback" not in err
    bad = dict(ckpt, model_config={**ckpt["model_config"], "colour": "blue"})
    with pytest.raises(ValueError, match="does not fit this version"):
        model_from_checkpoint(bad)
    wrong = dict(ckpt, model={k: v[:1] if v.dim() else v for k, v in ckpt["model"].items()})
    tasks.checkpoint.save_checkpoint(wrong, str(tmp_path / "wrong.pt"))  # a valid checksum of wrong shapes
    with pytest.raises(ValueError, match="do not fit its model_config"):
        tasks.load_model(str(tmp_path / "wrong.pt"))  # with its zoo's probe module (trained with probes)


def test_an_existing_run_is_refused_unless_resume_or_overwrite(zoo, tmp_path, capsys):
    out = str(tmp_path / "r")
    train_script.main(["--data", zoo, "--epochs", "1", "--out", out, *TINY])
    eval_script.main([os.path.join(out, "best.pt"), "--no-plot"])
    with pytest.raises(ValueError, match="already holds a run .*pass --resume to continue it, --overwrite"):
        train_script.main(["--data", zoo, "--epochs", "1", "--out", out, *TINY])
    # --resume continues to the new epoch count, with the stored history
    summary = train_script.main(["--data", zoo, "--epochs", "3", "--out", out, "--resume", *TINY])
    ckpt = tasks.read_checkpoint(os.path.join(out, "last.pt"))
    assert ckpt["epoch"] == 3 and [h["epoch"] for h in ckpt["history"]] == [1, 2, 3]
    assert summary["steps"] == ckpt["step"]
    with pytest.raises(ValueError, match="--resume: the run was trained with lr=0.001, not 0.003"):
        train_script.main(["--data", zoo, "--epochs", "4", "--out", out, "--resume", "--lr", "3e-3", *TINY])
    # --overwrite removes the old run's files: no stale metrics.json beside the new checkpoints
    assert os.path.isfile(os.path.join(out, "metrics.json"))
    train_script.main(["--data", zoo, "--epochs", "1", "--out", out, "--overwrite", *TINY])
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    assert tasks.read_checkpoint(os.path.join(out, "last.pt"))["epoch"] == 1
    with pytest.raises(ValueError, match="holds no last.pt to resume"):
        train_script.main(["--data", zoo, "--out", str(tmp_path / "new"), "--resume", *TINY])


def test_a_config_written_by_a_run_repeats_it(run, tmp_path, capsys):
    cfg = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert cfg["epochs"] == 2 and cfg["hidden"] == 8 and "resume" not in cfg
    common, task_cfg = train_script.parse_args(["--config", os.path.join(run, "config.yaml"), "--out",
                                                str(tmp_path / "again"), "--epochs", "1"])
    assert (common.epochs, common.hidden, common.layers, task_cfg.data, task_cfg.model) == (1, 8, 1, cfg["data"], "gmn")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    code, err = cli(capsys, "train.py", "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and "holds no mapping of options" in err


def test_nan_labels_and_weights_are_skipped_and_counted(zoo, tmp_path, capsys):
    path = tmp_path / "nan.h5"
    path.write_bytes(open(zoo, "rb").read())
    with h5py.File(path, "r+") as f:
        f["labels/test_acc"][0] = np.nan
        f["labels/test_acc"][1] = np.inf
        fp = next(iter(f["arch"]))
        row = f[f"arch/{fp}/params"][2]
        row[0] = np.nan
        f[f"arch/{fp}/params"][2] = row
    train_script.main(["--data", str(path), "--epochs", "1", "--out", str(tmp_path / "r"), *TINY[:-3]])
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("skipping")]
    assert skipped and sum(int(line.split()[1]) for line in skipped) == 3, out
    summary = train_script.main(["--data", str(path), "--epochs", "1", "--out", str(tmp_path / "r2"), *TINY])
    assert np.isfinite(summary["best_val"]["rmse"])


def test_labels_the_task_cannot_learn_are_refused(zoo, tmp_path):
    with pytest.raises(ValueError, match="holds strings; --task predict needs a numeric label"):
        train_script.main(["--data", zoo, "--target", "optimizer", "--out", str(tmp_path / "a"), *TINY])
    with pytest.raises(ValueError, match="not class ids"):
        train_script.main(["--data", zoo, "--task", "classify", "--target", "test_acc", "--out", str(tmp_path / "b"),
                           *TINY])


def test_scoring_networks_of_another_architecture_is_refused(run, tmp_path, capsys):
    (tmp_path / "nets.py").write_text("import torch\nfrom torch import nn\n"
                                      "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).state_dict(), tmp_path / "m.pt")
    code, err = cli(capsys, "eval.py", os.path.join(run, "best.pt"), "--predict", str(tmp_path / "m.pt"), "--model",
                    f"{tmp_path / 'nets.py'}:make", "--example-input-shape", "2,1,8,8")
    assert code == 2 and "was trained on #" in err and "Traceback" not in err


def test_one_line_errors_from_the_scripts(run, tmp_path, capsys):
    if not torch.cuda.is_available():
        code, err = cli(capsys, "eval.py", os.path.join(run, "best.pt"), "--device", "cuda")
        assert code == 2 and "no CUDA device" in err
    code, err = cli(capsys, "eval.py", os.path.join(run, "best.pt"), "--max-archs", "3")
    assert code == 2 and "--max-archs is an option of --task ghn, not of --task predict" in err
    code, err = cli(capsys, "train.py", "--data", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err


def test_python_api_of_the_scripts(zoo, run, tmp_path):
    summary = train_script.train({"data": zoo, "epochs": 1, "out": str(tmp_path / "api"), "hidden": 8, "layers": 1,
                                  "quiet": True, "threads": 1})
    assert summary["steps"] > 0
    with pytest.raises(ValueError, match="--archs is an option of --task ghn"):
        train_script.train({"data": zoo, "archs": "a.h5", "out": str(tmp_path / "api2")})
    res = eval_script.evaluate(os.path.join(run, "best.pt"), split="val", no_plot=True, out=str(tmp_path / "ev"))
    assert res["split"] == "val" and os.path.isfile(tmp_path / "ev" / "predictions.csv")
    lines = open(tmp_path / "ev" / "predictions.csv").read().splitlines()
    assert lines[0] == "zoo_index,test_acc,predicted" and len(lines) > 1


@pytest.mark.slow
def test_kill_9_during_training_never_leaves_an_unloadable_checkpoint(zoo, tmp_path):
    """Kill train.py at random moments while it saves every epoch; every checkpoint on disk loads."""
    out = tmp_path / "k"
    rng = np.random.default_rng(0)
    loaded = 0
    for _ in range(6):
        args = ["--data", zoo, "--epochs", "500", "--out", str(out), "--hidden", "8", "--layers", "1", "--quiet",
                "--threads", "1", "--batch-size", "4", "--resume" if (out / "last.pt").exists() else "--overwrite"]
        before = (out / "last.pt").stat().st_mtime if (out / "last.pt").exists() else 0.0
        proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:  # until this process has saved once
            if (out / "last.pt").exists() and (out / "last.pt").stat().st_mtime > before:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(float(rng.uniform(0.0, 1.0)))  # then anywhere in the following epochs and their saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for name in ("best.pt", "last.pt"):
            assert (out / name).exists()
            tasks.read_checkpoint(str(out / name))  # raises if truncated or damaged
            loaded += 1
    assert loaded == 12 and tasks.read_checkpoint(str(out / "last.pt"))["epoch"] > 1
