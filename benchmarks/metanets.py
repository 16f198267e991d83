"""Benchmark: every metanetwork on the same zoos and splits, 3 seeds, one results table.

Tasks (zoos are built once into --work if missing; nothing is downloaded):
  predict  : test accuracy of small digits CNNs (recipe digits-cnn-demo, --n-runs runs) -> Kendall tau, R^2
  classify : digit class of SIRENs fitted to all 1,797 digits images from one shared
             initialization (recipe digits-siren-shared)                    -> accuracy
  edit     : contrast edit of those SIRENs (equivariant models only)       -> MSE of the edited INR's image
Every model of a task gets the same epochs, batch size, learning rate and width; each run keeps
the checkpoint that is best on the validation split, and the table reports the test split. Training throughput is
graphs/s over the training epochs; peak memory is the training process's peak RSS (CPU; it
includes the ~400 MB of torch itself) or torch.cuda.max_memory_allocated (CUDA).

Usage: python benchmarks/metanets.py [--seeds 3] [--epochs 30 | --epochs classify=10,edit=5] [--tasks ...]
Results: benchmarks/results/metanets.md (and .json; written after every model, so an interrupted
benchmark keeps what it finished). The published tables:
  python benchmarks/metanets.py --tasks predict --epochs 20 --threads 1 --out benchmarks/results/metanets_predict
  python benchmarks/metanets.py --tasks classify,edit --epochs classify=10,edit=5 --threads 1 \
      --out benchmarks/results/metanets_inr
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


def zoo(work: str, task: str, n_runs: int, n_images: int | None) -> str:
    """Path of the task's zoo, built on first use."""
    if task == "predict":
        path = os.path.join(work, f"digits-cnn-demo-{n_runs}.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe("digits-cnn-demo", n_runs=n_runs), path, progress=True)
    else:
        path = os.path.join(work, f"digits-siren-shared-{n_images or 'all'}.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe("digits-siren-shared", n_images=n_images), path, progress=True)
    return path


def task_epochs(epochs: str, task: str) -> int:
    """Epochs of ``task`` from ``"30"`` (every task) or ``"classify=10,edit=5"``."""
    if "=" not in epochs:
        return int(epochs)
    per_task = dict(item.split("=") for item in epochs.split(","))
    if task not in per_task:
        raise SystemExit(f"--epochs {epochs}: no epochs given for task {task!r}")
    return int(per_task[task])


def run(task: str, model: str, data: str, seed: int, args: argparse.Namespace) -> dict:
    """One training run: test-split metrics of its best-on-validation checkpoint (and that checkpoint's
    validation metrics, as ``val_*``), throughput and memory."""
    import eval as eval_script

    out = os.path.join(args.work, "runs", f"{task}-{model}-{seed}")
    hidden = args.nfn_hidden if model == "nfn" else args.hidden
    extra = ["--edit", "contrast", "--lr", "3e-3", "--batch-size", "16"] if task == "edit" else []
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data, "--task", task, "--model", model,
           "--epochs", str(task_epochs(args.epochs, task)), "--hidden", str(hidden), "--layers", str(args.layers),
           "--seed", str(seed), "--out", out, "--quiet", "--threads", str(args.threads), *extra]
    subprocess.run(cmd, check=True)  # its own process: peak memory is this run's alone
    with open(os.path.join(out, "train_summary.json")) as f:
        summary = json.load(f)
    test = eval_script.main([os.path.join(out, "best.pt"), "--split", "test", "--no-plot"])
    return {**{k: test[k] for k in METRICS[task]}, **{f"val_{k}": summary["best_val"][k] for k in METRICS[task]},
            "graphs_per_s": summary["train_graphs_per_s"], "peak_mb": summary["peak_mem_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", default="30", help="epochs of every task, or per task: classify=10,edit=5")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--nfn-hidden", type=int, default=16, help="NFN channels (its features are hidden x kernel)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", default="predict,classify,edit")
    ap.add_argument("--models", default="", help="comma-separated subset of models")
    ap.add_argument("--n-runs", type=int, default=600, help="training runs of the predict zoo (~2.6 nets a run)")
    ap.add_argument("--n-images", type=int, default=None, help="INRs of the classify/edit zoo (default: all)")
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
        data = zoo(args.work, task, args.n_runs, args.n_images)
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
    lines = [f"# Metanetwork benchmark ({args.seeds} seeds, epochs {args.epochs}, width {args.hidden}, "
             f"{args.layers} layers; NFN width {args.nfn_hidden}; torch {torch.__version__}, "
             f"{'CUDA' if torch.cuda.is_available() else f'CPU, {args.threads} threads'})", ""]
    for task, per_model in results.items():
        scored = [k for k in METRICS[task] if k != "mse_identity"]  # test metrics, then validation (selection)
        rows_all = [r for rows in per_model.values() for r in rows]
        shown = list(METRICS[task]) + [f"val_{k}" for k in scored if all(f"val_{k}" in r for r in rows_all)]
        keys = shown + ["graphs_per_s", "peak_mb"]
        zoo_name = (f"digits-cnn-demo, {args.n_runs} runs" if task == "predict" else
                    f"digits-siren-shared, {args.n_images or 'all'} images")
        lines += [f"## {task} (zoo {zoo_name}; {task_epochs(str(args.epochs), task)} epochs; "
                  "test split, val_*: validation split)", "",
                  "| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for model, rows in per_model.items():
            cells = []
            for k in keys:
                v = np.array([r[k] for r in rows], dtype=float)
                fmt = ".5f" if task == "edit" else ".3f"
                cells.append(f"{v.mean():{fmt}} ± {v.std():{fmt}}" if k in shown else f"{v.mean():.0f}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
