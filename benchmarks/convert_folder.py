"""Benchmark: ``python -m datasets convert`` on a folder of small ``.pt`` checkpoints vs just loading them.

Makes a folder of N state_dicts of one small CNN (the Small CNN Zoo architecture, 4,970 parameters;
seeded) in a temporary directory, then times, round by round in rotating order (so that a noisy
machine slows every contender alike):

  * load:      ``torch.load(path, map_location="cpu", weights_only=True)`` of every file, in this process
  * convert:   ``datasets.convert.convert_folder`` in this process (``workers=0``: loading in this process
               too), tracing the factory and writing and committing the zoo, a new zoo each round
  * cli:       the command ``python -m datasets convert DIR OUT --model ...:small_cnn --workers 0
               --overwrite --quiet`` as a subprocess: start-up (imports), trace, load, write, commit
  * load_cli:  ``python -c`` importing torch and loading every file (the start-up-included baseline of cli)

Ratios are medians over rounds of the paired per-round time ratios (load time / convert time: the
convert rate as a fraction of the load rate). One torch thread everywhere (``OMP_NUM_THREADS=1``).

Usage: python benchmarks/convert_folder.py [--n 10000] [--rounds 3] [--out benchmarks/results/convert_folder.md]
Run from anywhere: the code measured is this checkout's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import graphs  # noqa: E402
from datasets.convert import convert_folder  # noqa: E402
from datasets.hdf5 import ZooReader  # noqa: E402

HERE = os.path.abspath(__file__)


def small_cnn(width: int = 16) -> nn.Module:
    """The Small CNN Zoo architecture: 3 conv layers, global average pool, linear head (4,970 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
        nn.Conv2d(width, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def make_folder(folder: str, n: int, seed: int = 0) -> list[str]:
    torch.manual_seed(seed)
    model = small_cnn()
    paths = []
    for i in range(n):
        for p in model.parameters():
            nn.init.normal_(p, 0.0, 0.1)
        path = os.path.join(folder, f"model_{i:05d}.pt")
        torch.save(model.state_dict(), path)
        paths.append(path)
    return paths


def _commit(root: str) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root, check=True).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/convert_folder.md")
    args = ap.parse_args()
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    torch.set_num_threads(1)
    root = ROOT

    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="convert_folder_") as work:
        src = os.path.join(work, "pt")
        os.makedirs(src)
        t0 = time.perf_counter()
        paths = make_folder(src, args.n)
        made_s = time.perf_counter() - t0
        out = os.path.join(work, "zoo.h5")
        example = (torch.zeros(1, 1, 28, 28),)
        cli = [sys.executable, "-m", "datasets", "convert", src, out, "--model", f"{HERE}:small_cnn",
               "--example-input-shape", "1,1,28,28", "--workers", "0", "--overwrite", "--quiet"]
        load_script = ("import glob, torch\ntorch.set_num_threads(1)\n"
                       f"for p in sorted(glob.glob({os.path.join(src, '*.pt')!r})):\n"
                       "    torch.load(p, map_location='cpu', weights_only=True)\n")

        def load():
            for p in paths:
                torch.load(p, map_location="cpu", weights_only=True)

        def convert():
            res = convert_folder(src, out, factory=small_cnn, example_inputs=example, workers=0, overwrite=True,
                                 progress=False)
            assert res.added == args.n, res

        def run_cli():
            subprocess.run(cli, check=True, cwd=root, env=env, stdout=subprocess.DEVNULL)

        def load_cli():
            subprocess.run([sys.executable, "-c", load_script], check=True, cwd=root, env=env)

        fns = {"load": load, "convert": convert, "cli": run_cli, "load_cli": load_cli}
        load()  # warm the page cache
        names = list(fns)
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
                print(f"round {r} {name}: {times[name][-1]:.2f} s", flush=True)
        # the zoo holds the checkpoints exactly (the last writer was the CLI or convert_folder)
        with ZooReader(out) as reader:
            assert reader.num_models == args.n
            layout = graphs.trace(small_cnn(), example)
            first = reader.params(layout.fingerprint)[0]
            assert (first == graphs.flatten_state_dict(torch.load(paths[0], weights_only=True), layout).numpy()).all()
        pt_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(src, "*.pt")))

    def ratio(num, den):
        return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: args.n / v for k, v in med.items()}
    rec = {"commit": _commit(root), "n": args.n, "rounds": args.rounds, "threads": torch.get_num_threads(),
           "nproc": os.cpu_count(), "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
           "torch": torch.__version__, "round_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
           "convert_vs_load": round(ratio("load", "convert"), 3), "cli_vs_load": round(ratio("load", "cli"), 3),
           "cli_vs_load_cli": round(ratio("load_cli", "cli"), 3)}
    print(json.dumps(rec))
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (nproc), load average "
               f"{rec['loadavg_start_end'][0]:.1f} at the start, {rec['loadavg_start_end'][1]:.1f} at the end, "
               f"torch {torch.__version__}, {rec['threads']} torch thread")
    rows = [
        ("load", "torch.load of every file, in this process", ""),
        ("convert", "convert_folder(workers=0), in this process: trace, load, write, commit",
         f"{rec['convert_vs_load']:.0%} of load"),
        ("cli", "python -m datasets convert --workers 0 (subprocess: start-up, trace, load, write, commit)",
         f"{rec['cli_vs_load']:.0%} of load, {rec['cli_vs_load_cli']:.0%} of load_cli"),
        ("load_cli", "python -c 'import torch; torch.load every file' (subprocess)", ""),
    ]
    lines = [
        "# Convert a folder of checkpoints (benchmarks/convert_folder.py)",
        "",
        f"{args.n:,} `.pt` state_dicts of the Small CNN Zoo CNN (4,970 parameters; {pt_bytes / 1e6:.1f} MB, made in "
        f"{made_s:.1f} s); commit {rec['commit']}; {machine}; {args.rounds} rounds, contenders in rotating order.",
        "",
        "| contender | what | models/s (median) | rate vs plain loading (median of paired rounds) |",
        "|---|---|---:|---|",
        *[f"| {k} | {what} | {rate[k]:,.0f} | {note} |" for k, what, note in rows],
        "",
        "Per-round seconds: " + "; ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)}" for k, v in times.items()) + ".",
        "",
        f"Command: `python benchmarks/convert_folder.py --n {args.n} --rounds {args.rounds}` from the project root.",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
