"""The zoo file format: exact round trips, labels, validation, and writes that a crash cannot corrupt."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from zoo_models import make_cnn, make_mlp, rows_for

import graphs
from datasets import (
    LabelError,
    NonFiniteError,
    SplitSpec,
    ZooFormatError,
    ZooLockedError,
    ZooReader,
    ZooWriter,
    make_splits,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def read_state(reader: ZooReader, i: int) -> dict:
    fp, vec, ints = reader.read(i)
    return graphs.unflatten_state_dict(torch.from_numpy(vec), reader.layout(fp), torch.from_numpy(ints))


# ---------------------------------------------------------------------- round trips
def test_round_trip_is_exact(cnn_zoo):
    path, models = cnn_zoo
    with ZooReader(path) as r:
        assert r.num_models == 20 and len(r.fingerprints) == 1
        for i, m in enumerate(models):
            assert_same_state(read_state(r, i), m.state_dict())
        assert r.file[f"arch/{r.fingerprints[0]}/params"].chunks[0] >= 1


def test_several_architectures_share_one_file(tmp_path, mlp_layout, cnn_layout):
    path = tmp_path / "mixed.h5"
    models = [make_mlp(i) if i % 3 else make_cnn(i) for i in range(9)]
    with ZooWriter(path) as w:
        for m in models:
            w.add(m, mlp_layout if isinstance(m, type(make_mlp(0))) else cnn_layout)
    with ZooReader(path) as r:
        assert set(r.fingerprints) == {mlp_layout.fingerprint, cnn_layout.fingerprint}
        assert list(r.models_of(cnn_layout.fingerprint)) == [0, 3, 6]
        for i, m in enumerate(models):
            assert_same_state(read_state(r, i), m.state_dict())
        params, _ = r.read_rows(mlp_layout.fingerprint, np.array([3, 0, 3]))
        assert np.array_equal(params[1], r.read(1)[1]) and np.array_equal(params[0], params[2])


def test_bulk_rows_and_compression(tmp_path, mlp_layout):
    rows = rows_for(mlp_layout, 0, 300)
    for compression in (None, "lzf"):
        path = tmp_path / f"bulk-{compression}.h5"
        with ZooWriter(path, compression=compression, buffer_bytes=10_000) as w:
            assert w.add_rows(mlp_layout, rows[:100]) == 0
            assert w.add_rows(mlp_layout, rows[100:]) == 100
        with ZooReader(path) as r:
            got, ints = r.read_rows(mlp_layout.fingerprint, np.arange(300))
            assert np.array_equal(got, rows) and ints.shape == (300, 0)


# ---------------------------------------------------------------------- labels
def test_label_kinds_and_missing_values(tmp_path, mlp_layout):
    path = tmp_path / "labels.h5"
    with ZooWriter(path) as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 0, 2), labels={"acc": [0.5, None], "epoch": [1, 2]})
        with pytest.raises(LabelError, match="'epoch' is an int column"):  # refused at once, buffer untouched
            w.add_rows(mlp_layout, rows_for(mlp_layout, 2, 4), labels={"note": ["a", "b"]})
        w.add_rows(mlp_layout, rows_for(mlp_layout, 2, 4), labels={"epoch": [3, 4], "note": ["a", "b"]})
    with ZooReader(path) as r:
        assert r.num_models == 4
        assert r.label_names == ("acc", "epoch", "note")
        assert [r.label_kind(n) for n in r.label_names] == ["float", "int", "str"]
        assert np.array_equal(r.labels("acc"), [0.5, np.nan, np.nan, np.nan], equal_nan=True)
        assert list(r.labels("epoch")) == [1, 2, 3, 4]
        assert list(r.labels("note")) == ["", "", "a", "b"]


@pytest.mark.parametrize("labels, message", [
    ({"acc": [0.1, 0.2]}, "has 2 values for 3 models"),
    ({"epoch": [1, None, 3]}, "int column"),
    ({"epoch": [1, 2.5, 3]}, "int column"),
    ({"epoch": [1, "x", 3]}, "text"),
])
def test_bad_label_columns_are_rejected(tmp_path, mlp_layout, labels, message):
    path = tmp_path / "bad.h5"
    with pytest.raises(LabelError, match=message):
        with ZooWriter(path) as w:
            w.add_rows(mlp_layout, rows_for(mlp_layout, 0, 3), labels=labels)
    assert not path.exists()


# ---------------------------------------------------------------------- bad weights
def test_nonfinite_weights_are_rejected_unless_allowed(tmp_path, mlp_layout):
    m = make_mlp(0)
    with torch.no_grad():
        m.fc2.weight[1, 2] = float("nan")
    path = tmp_path / "nan.h5"
    with pytest.raises(NonFiniteError, match=r"'fc2.weight'.*allow_nonfinite"):
        with ZooWriter(path) as w:
            w.add(m, mlp_layout, labels={"source": "bad.pt"})
    assert not path.exists() and os.listdir(tmp_path) == []
    with ZooWriter(path, allow_nonfinite=True) as w:
        w.add(m, mlp_layout)
    with ZooReader(path) as r:
        assert np.isnan(r.read(0)[1]).sum() == 1


def test_shape_mismatch_names_the_problem(tmp_path, mlp_layout):
    with ZooWriter(tmp_path / "x.h5") as w:
        with pytest.raises(graphs.LayoutMismatchError, match="wrong shapes"):
            w.add(make_mlp(0, width=9), mlp_layout)
        with pytest.raises(graphs.LayoutMismatchError, match="needs"):
            w.add_rows(mlp_layout, np.zeros((2, mlp_layout.num_params + 1)))


# ---------------------------------------------------------------------- validation on open
def _zoo(tmp_path, layout, n=3):
    path = tmp_path / "zoo.h5"
    with ZooWriter(path) as w:
        w.add_rows(layout, rows_for(layout, 0, n), labels={"acc": list(range(n))})
    return path


def test_foreign_truncated_and_versioned_files_are_refused(tmp_path, mlp_layout):
    path = _zoo(tmp_path, mlp_layout)
    with pytest.raises(FileNotFoundError, match="no zoo file"):
        ZooReader(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ZooFormatError, match="not an HDF5 file"):
        ZooReader(tmp_path / "text.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ZooFormatError, match="not a weightgraph zoo"):
        ZooReader(tmp_path / "foreign.h5")
    data = path.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match="truncated or corrupt"):
        ZooReader(tmp_path / "trunc.h5")
    for version, message in ((2, "newer"), (0, "cannot read")):
        (tmp_path / "v.h5").write_bytes(data)
        with h5py.File(tmp_path / "v.h5", "r+") as f:
            f.attrs["format_version"] = version
        with pytest.raises(ZooFormatError, match=message):
            ZooReader(tmp_path / "v.h5")
    (tmp_path / "bad.h5").write_bytes(data)
    with h5py.File(tmp_path / "bad.h5", "r+") as f:
        f["labels/acc"].resize((2,))
    with pytest.raises(ZooFormatError, match="label column 'acc'"):
        ZooReader(tmp_path / "bad.h5")


# ---------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_the_old_file(tmp_path, mlp_layout):
    path = _zoo(tmp_path, mlp_layout)
    before = path.read_bytes()
    for mode in ("w", "a"):
        with pytest.raises(RuntimeError):
            with ZooWriter(path, mode) as w:
                w.add_rows(mlp_layout, rows_for(mlp_layout, 10, 20), labels={"acc": list(range(10, 20))})
                w.flush()
                raise RuntimeError("boom")
        assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["zoo.h5"]  # no temporary or lock files left


def test_append_keeps_models_and_second_writer_is_refused(tmp_path, mlp_layout):
    path = _zoo(tmp_path, mlp_layout)
    inode = os.stat(path).st_ino
    with ZooWriter(path, "a"):
        pass
    assert os.stat(path).st_ino == inode  # nothing written: no copy, no commit
    with ZooWriter(path, "a") as w:
        with pytest.raises(ZooLockedError, match="another process is writing"):
            ZooWriter(path, "a")
        w.add_rows(mlp_layout, rows_for(mlp_layout, 3, 5), labels={"acc": [3, 4]})
    with ZooReader(path) as r:
        assert np.array_equal(r.read_rows(mlp_layout.fingerprint, np.arange(5))[0], rows_for(mlp_layout, 0, 5))
        assert list(r.labels("acc")) == [0, 1, 2, 3, 4]
        assert r.split_info()["num_models"] == 5  # automatic splits follow appends
    assert sorted(os.listdir(tmp_path)) == ["zoo.h5"]


def test_periodic_commits_publish_models_before_close(tmp_path, mlp_layout):
    path = tmp_path / "periodic.h5"
    with ZooWriter(path, commit_interval=0.0, buffer_bytes=1) as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 0, 4))
        with ZooReader(path) as r:
            assert r.num_models == 4
        w.add_rows(mlp_layout, rows_for(mlp_layout, 4, 6))
    with ZooReader(path) as r:
        assert r.num_models == 6
        assert r.split_info()["num_models"] == 6  # a periodic commit took the last rows: close still splits


@pytest.mark.parametrize("buffer_bytes", [1, 1 << 30])
def test_default_splits_are_written_when_the_last_rows_were_committed_periodically(tmp_path, mlp_layout,
                                                                                   buffer_bytes):
    path = tmp_path / "late.h5"  # 1: every add commits; 1 << 30: rows stay buffered and close's own flush commits
    with ZooWriter(path, commit_interval=0.0, buffer_bytes=buffer_bytes) as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 0, 10))
    with ZooReader(path) as r:
        assert sum(len(r.split(s)) for s in r.split_names) == 10


def _append_until_killed(path: str, layout_json: str, commit_interval, ready) -> None:
    layout = graphs.Layout.from_json(layout_json)
    with ZooWriter(path, "a", commit_interval=commit_interval, buffer_bytes=1) as w:
        i = w.num_models
        while True:
            w.add_rows(layout, rows_for(layout, i, i + 5), labels={"i": list(range(i, i + 5))})
            i += 5
            ready.set()


def check_intact(path, layout, at_least: int) -> int:
    """Every model of the zoo is exactly the row written for its index; return the count."""
    with ZooReader(path) as r:
        n = r.num_models
        assert n >= at_least and n % 5 == at_least % 5
        params, _ = r.read_rows(layout.fingerprint, np.arange(n))
        assert np.array_equal(params, rows_for(layout, 0, n))
        assert np.array_equal(r.labels("i"), np.arange(n))
    return n


def test_kill_9_during_appends_never_loses_committed_models(tmp_path, mlp_layout):
    """SIGKILL a child process at random moments while it appends and commits as often as it can.

    The zoo starts with 20,000 models (5 MB), so that a good share of the kills land while a commit
    copies, syncs or renames the file.
    """
    path = str(tmp_path / "kill.h5")
    n = 20_000
    with ZooWriter(path) as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 0, n), labels={"i": list(range(n))})
    ctx = multiprocessing.get_context("fork")
    rng = np.random.default_rng(0)
    for interval in [0.0] * 8 + [None]:  # None: one long uncommitted append
        ready = ctx.Event()
        child = ctx.Process(target=_append_until_killed, args=(path, mlp_layout.to_json(), interval, ready))
        child.start()
        assert ready.wait(20)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        n_before, n = n, check_intact(path, mlp_layout, at_least=n)
        if interval is None:
            assert n == n_before  # nothing committed: the file is exactly the earlier version
    assert n > 20_000  # the commits of the killed writers survived
    with ZooWriter(path, "a") as w:  # a killed writer's lock and temporary file do not get in the way
        w.add_rows(mlp_layout, rows_for(mlp_layout, n, n + 5), labels={"i": list(range(n, n + 5))})
    check_intact(path, mlp_layout, at_least=n + 5)
    assert sorted(os.listdir(tmp_path)) == ["kill.h5"]


KILL_SCRIPT = """
import sys
import graphs
from datasets import ZooWriter
sys.path.insert(0, sys.argv[3])
from zoo_models import rows_for
layout = graphs.Layout.from_json(open(sys.argv[2]).read())
with ZooWriter(sys.argv[1], "a", commit_interval=0.0, buffer_bytes=1) as w:
    i = w.num_models
    while True:
        w.add_rows(layout, rows_for(layout, i, i + 5), labels={"i": list(range(i, i + 5))})
        i += 5
        w.commit()
        print(i, flush=True)
"""


def test_kill_9_subprocess_during_long_append(tmp_path, mlp_layout):
    """The same with a separate interpreter and `kill -9`, after it has committed a few times."""
    path = tmp_path / "kill.h5"
    with ZooWriter(path) as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 0, 5), labels={"i": list(range(5))})
    (tmp_path / "layout.json").write_text(mlp_layout.to_json())
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(tmp_path / "layout.json"),
                             os.path.dirname(__file__)], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        committed = [int(proc.stdout.readline()) for _ in range(3)]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert check_intact(path, mlp_layout, at_least=committed[-1]) >= committed[-1]


# ---------------------------------------------------------------------- splits
def test_splits_are_deterministic_and_grouped():
    spec = SplitSpec(seed=3)
    a, b = make_splits(50, spec), make_splits(50, spec)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(50))
    assert [len(a[k]) for k in spec.names] == [40, 5, 5]
    runs = np.arange(50) // 5
    g = make_splits(50, SplitSpec(group_by="run"), runs)
    for idx in g.values():  # every run lies in one split
        assert set(runs[idx]).isdisjoint(set(runs[np.setdiff1d(np.arange(50), idx)]))
    with pytest.raises(ValueError, match="sum to 1"):
        SplitSpec(fractions=(0.5, 0.4, 0.2))


def test_explicit_splits_are_kept_on_append(tmp_path, mlp_layout):
    path = _zoo(tmp_path, mlp_layout, n=10)
    spec = SplitSpec(("a", "b"), (0.5, 0.5), seed=1)
    with ZooWriter(path, "a") as w:
        w.set_splits(make_splits(10, spec), spec)
    with ZooWriter(path, "a") as w:
        w.add_rows(mlp_layout, rows_for(mlp_layout, 10, 12), labels={"acc": [10, 11]})
    with ZooReader(path) as r:
        info = r.split_info()
        assert info["names"] == ("a", "b") and info["num_models"] == 10 and not info["auto"]
        assert json.loads(r.file["splits"].attrs["fractions"]) == [0.5, 0.5]
