"""``python -m datasets``: convert, info, split, stats, merge, and one-line errors with exit code 2."""

import os
import subprocess
import sys

import cli_helpers
import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from zoo_models import make_cnn, make_mlp

from datasets import ZooReader, ZooWriter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FACTORIES = cli_helpers.FACTORIES  # MLP, make, make_sized, ...


cli, assert_one_line_error = cli_helpers.cli, cli_helpers.assert_one_line_error


@pytest.fixture
def factory_dir(tmp_path, monkeypatch):
    (tmp_path / "wg_cli_models.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_checkpoints(src, models, start=0):
    """Checkpoints in every supported form: plain and wrapped .pt/.pth, and .safetensors."""
    for i, m in enumerate(models, start):
        sd = m.state_dict()
        folder = src / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:
            save_file({k: v.contiguous() for k, v in sd.items()}, folder / f"m{i}.safetensors")
        elif i % 3 == 1:
            torch.save({"state_dict": sd, "epoch": 3}, folder / f"m{i}.pth")
        else:
            torch.save(sd, folder / f"m{i}.pt")


def test_convert_with_labels_then_resume(tmp_path, factory_dir, capsys):
    src, out = tmp_path / "ckpts", tmp_path / "zoo.h5"
    models = [make_mlp(i) for i in range(6)]
    write_checkpoints(src, models)
    names = sorted(p.name for p in src.rglob("m*.*"))
    (tmp_path / "labels.csv").write_text("file,acc,epoch\n" + "".join(
        f"{n},{0.5 + int(n[1]) / 10},{int(n[1]) % 3}\n" for n in names))
    rc, text, _ = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--example-input-shape", "2,4",
                      "--labels", tmp_path / "labels.csv", "--workers", "0", "--quiet")
    assert rc == 0 and "added 6 models" in text
    with ZooReader(out) as r:
        sources = list(r.labels("source"))
        assert sorted(sources) == sorted(str(p.relative_to(src)) for p in src.rglob("m*.*"))
        for i, s in enumerate(sources):
            k = int(os.path.basename(s)[1])
            assert r.labels("acc")[i] == pytest.approx(0.5 + k / 10) and r.labels("epoch")[i] == k % 3
            vec = r.read(i)[1]
            assert np.array_equal(vec, torch.cat([p.detach().reshape(-1) for p in models[k].parameters()]).numpy())
    write_checkpoints(src, [make_mlp(i) for i in range(6, 8)], start=6)
    rc, text, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--example-input-shape", "2,4",
                        "--workers", "0", "--quiet")
    assert_one_line_error(rc, err, "'epoch' is an int column")  # new models need their labels too
    with open(tmp_path / "labels.csv", "a") as fh:
        fh.write("m6.safetensors,0.1,0\nm7.pth,0.2,1\n")
    rc, text, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--example-input-shape", "2,4",
                        "--labels", tmp_path / "labels.csv", "--workers", "2", "--quiet")
    assert rc == 0 and "added 2 models, skipped 6, 8 in total" in text, err
    rc, text, _ = cli(capsys, "info", out)
    assert rc == 0 and "8 models" in text and "acc" in text and "source" in text and "train 6" in text


def test_convert_reads_embedded_layouts_and_sizes_models(tmp_path, factory_dir, capsys, mlp_layout):
    src = tmp_path / "embedded"
    src.mkdir()
    for i in range(3):
        sd = make_mlp(i).state_dict()
        torch.save({"model": sd, "layout": mlp_layout.to_json()}, src / f"e{i}.pt")
    save_file(make_mlp(9).state_dict(), src / "e9.safetensors", metadata={"layout": mlp_layout.to_json()})
    rc, text, _ = cli(capsys, "convert", src, tmp_path / "e.h5", "--workers", "0", "--quiet")
    assert rc == 0 and "added 4 models" in text
    sized = tmp_path / "sized"
    sized.mkdir()
    for i, width in enumerate((5, 7, 5)):
        torch.save(make_mlp(i, width).state_dict(), sized / f"w{i}.pt")
    rc, _, _ = cli(capsys, "convert", sized, tmp_path / "s.h5", "--model", "wg_cli_models:make_sized",
                   "--example-input-shape", "2,4", "--workers", "0", "--quiet")
    with ZooReader(tmp_path / "s.h5") as r:
        assert rc == 0 and len(r.fingerprints) == 2 and list(r.model_arch) == [0, 1, 0]


def test_convert_errors_are_one_line(tmp_path, factory_dir, capsys):
    src, out = tmp_path / "src", tmp_path / "out.h5"
    src.mkdir()
    torch.save(make_mlp(0).state_dict(), src / "ok.pt")
    args = ("--example-input-shape", "2,4", "--workers", "0", "--quiet")
    rc, _, err = cli(capsys, "convert", src, out, "--workers", "0", "--quiet")
    assert_one_line_error(rc, err, "embeds no layout", "--model")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:nothing", *args)
    assert_one_line_error(rc, err, "no callable 'nothing'")
    (tmp_path / "short.csv").write_text("acc,epoch\n0.5,1\n0.6,2\n")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--labels", tmp_path / "short.csv",
                     *args)
    assert_one_line_error(rc, err, "no column naming each row's checkpoint", "looked for source, path, file")
    bad = make_mlp(1)
    with torch.no_grad():
        bad.fc1.bias[0] = float("inf")
    torch.save(bad.state_dict(), src / "inf.pt")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", *args)
    assert_one_line_error(rc, err, "inf.pt", "'fc1.bias'", "--allow-nonfinite")
    assert not out.exists()
    rc, _, _ = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--allow-nonfinite", *args)
    assert rc == 0
    torch.save(make_mlp(2, width=5).state_dict(), src / "wide.pt")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", *args)
    assert_one_line_error(rc, err, "wide.pt", "wrong shapes")
    os.remove(src / "wide.pt")
    (src / "junk.pt").write_bytes(b"not a checkpoint")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", *args)
    assert_one_line_error(rc, err, "junk.pt")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", "--skip-errors", *args)
    assert rc == 0 and "skipped junk.pt" in err
    os.remove(src / "junk.pt")
    torch.save({"state_dict": make_mlp(3).state_dict(), "cfg": ArbitraryObject()}, src / "code.pt")
    rc, _, err = cli(capsys, "convert", src, out, "--model", "wg_cli_models:make", *args)
    assert_one_line_error(rc, err, "code.pt", "weights_only")


class ArbitraryObject:
    """Unpickling this would run code from the checkpoint: weights_only loading must refuse it."""


def test_info_rejects_bad_files(tmp_path, capsys, mlp_layout):
    (tmp_path / "text.h5").write_text("hello")
    rc, _, err = cli(capsys, "info", tmp_path / "text.h5")
    assert_one_line_error(rc, err, "not an HDF5 file")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1
    rc, _, err = cli(capsys, "info", tmp_path / "foreign.h5")
    assert_one_line_error(rc, err, "not a weightgraph zoo")
    with ZooWriter(tmp_path / "zoo.h5") as w:
        w.add(make_mlp(0), mlp_layout)
    data = (tmp_path / "zoo.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:2000])
    rc, _, err = cli(capsys, "info", tmp_path / "cut.h5")
    assert_one_line_error(rc, err, "truncated or corrupt")
    with h5py.File(tmp_path / "zoo.h5", "r+") as f:
        f.attrs["format_version"] = 7
    rc, _, err = cli(capsys, "info", tmp_path / "zoo.h5")
    assert_one_line_error(rc, err, "version 7", "upgrade")
    rc, _, err = cli(capsys, "info", tmp_path / "missing.h5")
    assert_one_line_error(rc, err, "no zoo file")


def test_split_stats_merge_and_plot(tmp_path, capsys, mlp_layout, cnn_layout):
    a, b, out = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "ab.h5"
    with ZooWriter(a) as w:
        for i in range(10):
            w.add(make_mlp(i), mlp_layout, labels={"acc": i / 10, "run": i // 2})
    with ZooWriter(b) as w:
        for i in range(6):
            w.add(make_cnn(i), cnn_layout, labels={"acc": i / 10, "note": f"cnn{i}"})
    rc, text, _ = cli(capsys, "split", a, "--fractions", "0.6,0.2,0.2", "--seed", "4", "--group-by", "run")
    assert rc == 0 and "train 6, val 2, test 2" in text
    with ZooReader(a) as r:
        runs = r.labels("run")
        assert all(len(set(runs[r.split(n)]) & set(runs[r.split(m)])) == 0
                   for n in r.split_names for m in r.split_names if n != m)
    rc, _, err = cli(capsys, "split", a, "--group-by", "nope")
    assert_one_line_error(rc, err, "no label 'nope'")
    rc, _, err = cli(capsys, "split", a, "--fractions", "0.5,0.6,0.1")
    assert_one_line_error(rc, err, "sum to 1")
    rc, text, _ = cli(capsys, "stats", a)
    assert rc == 0 and "statistics over 6 models" in text
    rc, text, _ = cli(capsys, "merge", a, b, out)
    assert rc == 0 and "16 models from 2 zoos" in text
    with ZooReader(out) as r, ZooReader(a) as ra, ZooReader(b) as rb:
        assert r.label_kind("run") == "float" and np.isnan(r.labels("run")[10:]).all()
        assert list(r.labels("note")) == [""] * 10 + [f"cnn{i}" for i in range(6)]
        assert list(r.split("test")) == list(ra.split("test")) + list(rb.split("test") + 10)
        assert np.array_equal(r.read(12)[1], rb.read(2)[1])
    rc, _, err = cli(capsys, "merge", a, b, a)
    assert_one_line_error(rc, err, "also an input")
    rc, text, _ = cli(capsys, "info", out, "--plot", tmp_path / "ab.png")
    assert rc == 0 and "2 architecture(s)" in text and (tmp_path / "ab.png").stat().st_size > 1000


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    proc = subprocess.run([sys.executable, "-m", "datasets", "info", str(tmp_path / "bad.h5")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
