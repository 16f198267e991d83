"""Benchmark: every metanetwork on the same zoos and splits, 3 seeds, one results table.

Tasks (zoos are built once into --work if missing; nothing is downloaded):
  predict  : test accuracy of small digits CNNs (recipe digits-cnn-demo)   -> Kendall tau, R^2
  classify : digit class of SIRENs fitted to digits images (digits-siren)  -> accuracy
  edit     : contrast edit of those SIRENs (equivariant models only)       -> MSE of the edited INR's image
Every model gets the same epochs, batch size, learning rate and width. Training throughput is
graphs/s over the training epochs; peak memory is the training process's peak RSS (CPU; it
includes the ~400 MB of torch itself) or torch.cuda.max_memory_allocated (CUDA).

Usage: python benchmarks/metanets.py [--seeds 3] [--epochs 30] [--tasks predict,classify,edit]
Results: benchmarks/results/metanets.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasets.zoo.build import build_zoo  # noqa: E402
from datasets.zoo.recipes import get_recipe  # noqa: E402

MODELS = {"predict": ["gmn", "pna", "transformer", "nfn", "statnn", "deepsets", "mlp"],
          "classify": ["gmn", "pna", "transformer", "nfn", "statnn", "deepsets", "mlp"],
          "edit": ["gmn", "pna", "transformer", "nfn"]}
METRICS = {"predict": ("kendall_tau", "r2"), "classify": ("accuracy",), "edit": ("mse", "mse_identity")}


def zoo(work: str, task: str, n_images: int) -> str:
    """Path of the task's zoo, built on first use."""
    if task == "predict":
        path = os.path.join(work, "digits-cnn-demo.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe("digits-cnn-demo", n_runs=200), path, progress=True)
    else:
        path = os.path.join(work, "digits-siren.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe("digits-siren", n_images=n_images), path, progress=True)
    return path


def run(task: str, model: str, data: str, seed: int, args: argparse.Namespace) -> dict:
    """One training run; test-split metrics of its best checkpoint, throughput and memory."""
    import eval as eval_script

    out = os.path.join(args.work, "runs", f"{task}-{model}-{seed}")
    hidden = args.nfn_hidden if model == "nfn" else args.hidden
    extra = ["--edit", "contrast", "--lr", "3e-3", "--batch-size", "16"] if task == "edit" else []
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data, "--task", task, "--model", model,
           "--epochs", str(args.epochs), "--hidden", str(hidden), "--layers", str(args.layers), "--seed", str(seed),
           "--out", out, "--quiet", "--threads", str(args.threads), *extra]
    subprocess.run(cmd, check=True)  # its own process: peak memory is this run's alone
    with open(os.path.join(out, "train_summary.json")) as f:
        summary = json.load(f)
    test = eval_script.main([os.path.join(out, "best.pt"), "--split", "test", "--no-plot"])
    return {**{k: test[k] for k in METRICS[task]}, "graphs_per_s": summary["train_graphs_per_s"],
            "peak_mb": summary["peak_mem_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--nfn-hidden", type=int, default=16, help="NFN channels (its features are hidden x kernel)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", default="predict,classify,edit")
    ap.add_argument("--models", default="", help="comma-separated subset of models")
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--work", default="benchmarks/work")
    ap.add_argument("--out", default="benchmarks/results/metanets")
    ap.add_argument("--report-only", action="store_true", help="rewrite the table from OUT.json")
    args = ap.parse_args()
    if args.report_only:
        with open(args.out + ".json") as f:
            saved = json.load(f)
        report(argparse.Namespace(**saved["args"]), saved["results"], args.out)
        return
    os.makedirs(args.work, exist_ok=True)
    results: dict = {}
    for task in args.tasks.split(","):
        data = zoo(args.work, task, args.n_images)
        for model in MODELS[task]:
            if args.models and model not in args.models.split(","):
                continue
            rows = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                rows.append(run(task, model, data, seed, args))
                print(f"{task:<8} {model:<12} seed {seed}: {rows[-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
            results.setdefault(task, {})[model] = rows
    with open(args.out + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    report(args, results, args.out)


def report(args: argparse.Namespace, results: dict, out: str) -> None:
    """Write the markdown table (mean ± std over seeds) of ``results``."""
    lines = [f"# Metanetwork benchmark ({args.seeds} seeds, {args.epochs} epochs, width {args.hidden}, "
             f"{args.layers} layers; NFN width {args.nfn_hidden}; torch {torch.__version__}, "
             f"{'CUDA' if torch.cuda.is_available() else f'CPU, {args.threads} threads'})", ""]
    for task, per_model in results.items():
        keys = list(METRICS[task]) + ["graphs_per_s", "peak_mb"]
        lines += [f"## {task}", "", "| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for model, rows in per_model.items():
            cells = []
            for k in keys:
                v = np.array([r[k] for r in rows], dtype=float)
                fmt = ".5f" if task == "edit" else ".3f"
                cells.append(f"{v.mean():{fmt}} ± {v.std():{fmt}}" if k in METRICS[task] else f"{v.mean():.0f}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
