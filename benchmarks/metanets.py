"""Benchmark: every metanetwork on the same zoos and splits, a small tuning grid, 3 seeds, one results table.

Tasks (zoos are built once into --work if missing; nothing is downloaded):
  predict        : test accuracy of small digits CNNs of one architecture (recipe digits-cnn-demo,
                   --n-runs runs)                                                  -> Kendall tau, R^2
  predict-mixed  : the same across 6 architectures in one zoo (recipe digits-cnn-small: widths 4/8/16,
                   2-3 conv layers); layout-bound models (nfn, statnn, mlp) do not apply
  classify       : digit class of SIRENs fitted to all 1,797 digits images from one shared
                   initialization (recipe digits-siren-shared)                    -> accuracy
  classify-indep : the field's protocol: SIRENs of all 1,797 digits upsampled to 16x16, each from its own
                   initialization (recipe digits16-siren), beside render-cnn (a CNN on the images the
                   INRs draw: the render-then-classify ceiling)                   -> accuracy
Graph models take 16 learned probe features by default (train.py's default on these runnable zoos); the
*-noprobes rows are the same models on weights only, gmn-fixed keeps the probes fixed.
  edit           : contrast edit of those SIRENs (equivariant models only)       -> MSE of the edited INR's image
  edit-dilate    : the same with dilation (a 3x3 max filter); mse_identity: the unedited INR against the target
                   (editors take weights only: --task edit has no probe features)
Preprocessing rows: *-aug train on random neuron permutations (--augment), *-canon align every model to a
reference first (--canonicalize); *-ema validate and keep an EMA of the weights (--ema 0.995); gmn-rn pools per
node type and tensor and standardizes the pooled features over the batch (--readout group --readout-norm).
Protocol: every model of a task gets the same epochs, batch size, width and grid of learning rates x
weight decays (--lrs, --weight-decays); every run keeps its best-on-validation checkpoint; per model, the
grid point with the best mean *validation* score (RMSE for predict, accuracy for classify, MSE for edit)
is selected, and the table reports that point's *test* metrics, mean ± std over its seeds. Training
throughput is graphs/s over the training epochs (only comparable between runs made one at a time: see
benchmarks/train_step.py for throughput); peak memory is the run's peak RSS (CPU; it includes the
~400 MB of torch itself) or torch.cuda.max_memory_allocated (CUDA).

Usage: python benchmarks/metanets.py [--tasks predict,predict-mixed] [--epochs 30 | --epochs classify=10,edit=5]
       [--lrs 1e-3,3e-3] [--weight-decays 1e-4,1e-2] [--seeds 3] [--jobs 1] [--device auto]
Results: OUT.md and OUT.json (every run; written after each, so an interrupted benchmark keeps what it
finished; --report-only rewrites the table from OUT.json). The published tables:
  python benchmarks/metanets.py --tasks predict,predict-mixed --epochs 30 --jobs 16 --threads 1 \
      --out benchmarks/results/metanets_predict  # one H100, 16 runs at a time: ~150-350 s a run
  python benchmarks/metanets.py --tasks predict --n-runs 3000 --epochs 20 --models gmn --lrs 1e-3 \
      --weight-decays 1e-4 --threads 1 --device cpu --out benchmarks/results/metanets_predict_3000
      # one call per model at the point chosen on the 600-run zoo (statnn, nfn: 3e-3 / 1e-2; pna 1e-3 / 1e-2;
      # mlp, deepsets: 3e-3 / 1e-4); ~6 min a GMN run on one CPU thread

  python benchmarks/metanets.py --tasks predict --models gmn,statnn --n-runs 600 --lrs 1e-3 --weight-decays 1e-4 \
      --seeds 3 --epochs 30 --threads 1 --device cpu --jobs 2 --work /tmp/bw \
      --out benchmarks/results/metanets_predict_probes     # and _noprobes (gmn-noprobes), _statnn_tuned (3e-3/1e-2)
  python benchmarks/metanets.py --tasks classify-indep --models gmn-p64,gmn-noprobes,statnn,nfn,render-cnn \
      --lrs 1e-3 --weight-decays 1e-4 --seeds 1 --epochs 30 --threads 1 --device cpu --jobs 2 \
      --out benchmarks/results/metanets_inr_indep           # (_gmn16: --models gmn, run alone)
  python benchmarks/metanets.py --tasks classify --epochs 10 --lrs 1e-3 --weight-decays 1e-4 --threads 1 \
      --out benchmarks/results/metanets_inr   # and --tasks edit --epochs 5 --lrs 3e-3 (the INR table ran
                                             # as one call of the runner's earlier version)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasets import ZooReader  # noqa: E402
from datasets.zoo.build import build_zoo  # noqa: E402
from datasets.zoo.recipes import get_recipe  # noqa: E402
from metanets.inr import SirenRenderer  # noqa: E402
from tasks.probing import COORDINATE_PROBES  # noqa: E402

MODELS = {"predict": ["gmn", "gmn-aug", "gmn-canon", "gmn-ema", "gmn-rn", "gmn-noprobes", "gmn-stats", "pna",
                      "pna-noprobes", "transformer", "nfn", "statnn", "deepsets", "mlp", "mlp-aug", "mlp-canon"],
          "predict-mixed": ["gmn", "gmn-noprobes", "pna", "pna-noprobes", "transformer", "deepsets"],
          "classify": ["gmn", "gmn-noprobes", "pna", "transformer", "nfn", "statnn", "deepsets", "mlp"],
          "classify-indep": ["gmn", "gmn-p64", "gmn-p64-ema", "gmn-p64-group", "gmn-p64-rn", "gmn-p256-warp",
                             "gmn-noprobes", "gmn-noprobes-rn", "gmn-fixed", "pna", "nfn", "statnn",
                             "render-cnn"],
          "edit": ["gmn", "pna", "transformer", "nfn"], "edit-dilate": ["gmn", "pna", "transformer", "nfn"]}
METRICS = {"predict": ("kendall_tau", "r2"), "predict-mixed": ("kendall_tau", "r2"), "classify": ("accuracy",),
           "classify-indep": ("accuracy",), "edit": ("mse", "mse_identity"), "edit-dilate": ("mse", "mse_identity")}
SELECT = {"predict": ("rmse", -1), "predict-mixed": ("rmse", -1), "classify": ("accuracy", 1),
          "classify-indep": ("accuracy", 1), "edit": ("mse", -1), "edit-dilate": ("mse", -1)}
# table rows that are flags on a model; graph models on these (runnable) zoos take 16 learned probes by default
# (COORDINATE_PROBES on the INR zoos)
VARIANTS = {"gmn-stats": ["--model", "gmn", "--readout-stats"], "gmn-noprobes": ["--model", "gmn", "--probes", "0"],
            "pna-noprobes": ["--model", "pna", "--probes", "0"],
            "gmn-fixed": ["--model", "gmn", "--no-probe-learned"], "gmn-p64": ["--model", "gmn", "--probes", "64"],
            "gmn-aug": ["--model", "gmn", "--augment"], "gmn-canon": ["--model", "gmn", "--canonicalize"],
            "mlp-aug": ["--model", "mlp", "--augment"], "mlp-canon": ["--model", "mlp", "--canonicalize"],
            "gmn-ema": ["--model", "gmn", "--ema", "0.995"],
            "gmn-rn": ["--model", "gmn", "--readout", "group", "--readout-norm"],
            "gmn-p64-ema": ["--model", "gmn", "--probes", "64", "--ema", "0.995"],
            "gmn-p64-group": ["--model", "gmn", "--probes", "64", "--readout", "group"],
            "gmn-p64-rn": ["--model", "gmn", "--probes", "64", "--readout", "group", "--readout-norm"],
            "gmn-noprobes-rn": ["--model", "gmn", "--probes", "0", "--readout", "group", "--readout-norm"],
            "gmn-p256-warp": ["--model", "gmn", "--probes", "256", "--warp", "0.1"]}
PROBES = {"gmn": "16 learned", "pna": "16 learned", "transformer": "16 learned", "gmn-stats": "16 learned",
          "gmn-fixed": "16 fixed", "gmn-p64": "64 learned", "gmn-aug": "16 learned",
          "gmn-canon": "16 learned", "gmn-ema": "16 learned", "gmn-p64-ema": "64 learned",
          "gmn-p64-group": "64 learned", "gmn-p64-rn": "64 learned", "gmn-p256-warp": "256 learned",
          "gmn-rn": "16 learned"}  # others: weights only


def zoo(work: str, task: str, n_runs: int, n_images: int | None, views: int = 1,
        inr_recipe: str = "digits16-siren") -> str:
    """Path of the task's zoo, built on first use."""
    if task.startswith("predict"):
        recipe = "digits-cnn-demo" if task == "predict" else "digits-cnn-small"
        path = os.path.join(work, f"{recipe}-{n_runs}.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe(recipe, n_runs=n_runs), path, progress=True)
    else:
        recipe = inr_recipe if task == "classify-indep" else "digits-siren-shared"
        views = views if task == "classify-indep" else 1
        path = os.path.join(work, f"{recipe}-{n_images or 'all'}{f'-x{views}' if views > 1 else ''}.h5")
        if not os.path.exists(path):
            build_zoo(get_recipe(recipe, n_images=n_images, views=views), path, progress=True)
    return path


def task_epochs(epochs: str, task: str) -> int:
    """Epochs of ``task`` from ``"30"`` (every task) or ``"classify=10,edit=5"``."""
    if "=" not in epochs:
        return int(epochs)
    per_task = dict(item.split("=") for item in epochs.split(","))
    if task not in per_task:
        raise SystemExit(f"--epochs {epochs}: no epochs given for task {task!r}")
    return int(per_task[task])


def run(task: str, model: str, data: str, lr: float, wd: float, seed: int, args: argparse.Namespace) -> dict:
    """One training run: test-split metrics of its best-on-validation checkpoint, that checkpoint's
    validation metrics (``val_*``), throughput and memory."""
    if model == "render-cnn":
        return render_then_classify(data, task_epochs(args.epochs, task), lr, wd, seed, args.threads)
    out = os.path.join(args.work, "runs", f"{task}-{model}-lr{lr:g}-wd{wd:g}-{seed}")
    hidden = args.nfn_hidden if model == "nfn" else args.hidden
    extra = ["--edit", "dilate" if task == "edit-dilate" else "contrast", "--batch-size", "16"] \
        if task.startswith("edit") else []
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data, "--task", task.split("-")[0],
           *VARIANTS.get(model, ["--model", model]), "--epochs", str(task_epochs(args.epochs, task)),
           "--lr", str(lr), "--weight-decay", str(wd), "--hidden", str(hidden), "--layers", str(args.layers),
           "--seed", str(seed), "--out", out, "--quiet", "--threads", str(args.threads), "--device", args.device,
           "--overwrite", *extra]
    subprocess.run(cmd, check=True)  # its own process: peak memory is this run's alone
    subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), os.path.join(out, "best.pt"), "--split", "test",
                    "--no-plot", "--threads", str(args.threads), "--device", args.device], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "train_summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "metrics.json")) as f:
        test = json.load(f)
    return {"lr": lr, "weight_decay": wd, "seed": seed, **{k: test[k] for k in METRICS[task]},
            **{f"val_{k}": v for k, v in summary["best_val"].items()},
            "graphs_per_s": summary["train_graphs_per_s"], "peak_mb": summary["peak_mem_mb"]}


def render_then_classify(data: str, epochs: int, lr: float, wd: float, seed: int, threads: int) -> dict:
    """The ceiling of INR classification: a small CNN on the images the INRs draw (same splits, same epochs).

    Each SIREN is rendered at its image size (the zoo's ``image_index`` images are 16x16 for digits16);
    the CNN (3 conv layers of 32 channels, global pooling) trains on the train split's renders with
    Adam and keeps its best-on-validation epoch.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with ZooReader(data) as r:
        layout = r.layout()
        found = re.search(r"digits(\d+)-", os.path.basename(data))
        side = int(found.group(1)) if found else 8
        render = SirenRenderer(layout, (side, side))
        labels = torch.as_tensor(r.labels("class").astype(np.int64))
        parts = {}
        for split in ("train", "val", "test"):
            idx = r.split(split)
            rows = torch.from_numpy(r.read_rows(r.fingerprints[0], r.model_row[idx])[0])
            with torch.no_grad():
                parts[split] = (render(rows).reshape(len(idx), 1, side, side), labels[idx])
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(128, 10))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    x, y = parts["train"]

    def accuracy(split: str) -> float:
        with torch.no_grad():
            return float((net(parts[split][0]).argmax(1) == parts[split][1]).float().mean())

    best = (-1.0, 0.0)
    for _ in range(epochs):
        net.train()
        for b in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        val = accuracy("val")
        if val > best[0]:
            best = (val, accuracy("test"))
    seconds = time.perf_counter() - t0
    return {"lr": lr, "weight_decay": wd, "seed": seed, "accuracy": best[1], "val_accuracy": best[0],
            "graphs_per_s": epochs * len(x) / seconds, "peak_mb": float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed + seeds - 1")
    ap.add_argument("--epochs", default="30", help="epochs of every task, or per task: classify=10,edit=5")
    ap.add_argument("--lrs", default="1e-3,3e-3", help="learning rates of the tuning grid")
    ap.add_argument("--weight-decays", default="1e-4,1e-2", help="weight decays of the tuning grid")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--nfn-hidden", type=int, default=16, help="NFN channels (its features are hidden x kernel)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (passed to train.py and eval.py)")
    ap.add_argument("--jobs", type=int, default=1, help="training runs at a time (e.g. 16 on one GPU)")
    ap.add_argument("--tasks", default="predict,predict-mixed,classify,edit")
    ap.add_argument("--models", default="", help="comma-separated subset of models")
    ap.add_argument("--n-runs", type=int, default=600, help="training runs of the predict zoos (~2.6 nets a run)")
    ap.add_argument("--n-images", type=int, default=None, help="INRs of the classify/edit zoo (default: all)")
    ap.add_argument("--views", type=int, default=1, help="SIRENs per image of the classify-indep zoo, each from its "
                    "own initialization (splits by image)")
    ap.add_argument("--inr-recipe", default="digits16-siren", choices=("digits16-siren", "digits28-siren"),
                    help="the zoo of classify-indep (digits upsampled to 16x16 or 28x28)")
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
    args.commit = head_commit()
    cuda = args.device != "cpu" and torch.cuda.is_available()
    args.device_name = f"{torch.cuda.get_device_name()}, torch {torch.__version__}" if cuda else \
        f"CPU, {args.threads} threads per run, torch {torch.__version__}"
    grid = list(itertools.product([float(x) for x in args.lrs.split(",")],
                                  [float(x) for x in args.weight_decays.split(",")],
                                  range(args.first_seed, args.first_seed + args.seeds)))
    jobs = [(task, model, zoo(args.work, task, args.n_runs, args.n_images, args.views, args.inr_recipe), *point)
            for task in args.tasks.split(",") for model in MODELS[task]
            if not args.models or model in args.models.split(",") for point in grid]
    results: dict = {}
    lock = threading.Lock()

    def one(job: tuple) -> None:
        task, model = job[:2]
        t0 = time.perf_counter()
        row = run(*job, args)
        with lock:
            results.setdefault(task, {}).setdefault(model, []).append(row)
            print(f"{task:<13} {model:<11} lr {row['lr']:g} wd {row['weight_decay']:g} seed {row['seed']}: "
                  f"{ {k: round(row[k], 4) for k in METRICS[task]} } ({time.perf_counter() - t0:.0f} s)", flush=True)
            with open(args.out + ".json", "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=2)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, jobs))  # list(): re-raise a failed run's error
    report(args, results, args.out)


def head_commit() -> str:
    """The short commit of this checkout ("?" outside git)."""
    found = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "?"


def select(task: str, rows: list[dict]) -> tuple[tuple[float, float], list[dict]]:
    """The grid point (lr, weight decay) with the best mean validation score, and its runs."""
    key, sign = SELECT[task]
    points: dict = {}
    for r in rows:
        points.setdefault((r["lr"], r["weight_decay"]), []).append(r)
    best = max(points, key=lambda p: sign * np.mean([r[f"val_{key}"] for r in points[p]]))
    return best, points[best]


def report(args: argparse.Namespace, results: dict, out: str) -> None:
    """Write the markdown table of ``results``: per model, the selected grid point's mean ± std over seeds."""
    where = getattr(args, "device_name", None) or f"CPU, {args.threads} threads"
    lines = [f"# Metanetwork benchmark (epochs {args.epochs}, width {args.hidden}, {args.layers} layers; "
             f"NFN width {args.nfn_hidden}; {where})", "",
             "lr / wd: the grid point selected on the validation split; seeds: runs at that point.", ""]
    commit = getattr(args, "commit", None) or head_commit()  # the runs' commit(s), kept in OUT.json
    lines[0] += f" at commit {commit} on {platform.node() or 'this machine'} ({os.cpu_count()} CPUs)"
    views = getattr(args, "views", 1)
    zoos = {"predict": f"digits-cnn-demo, {args.n_runs} runs",
            "predict-mixed": f"digits-cnn-small, {args.n_runs} runs, 6 architectures",
            "classify-indep": f"{args.inr_recipe}: digits upsampled to {args.inr_recipe[6:8]}x{args.inr_recipe[6:8]}, "
                              "independent initializations, "
                              f"{args.n_images or 'all 1,797'} images"
                              f"{f', {views} SIRENs per image (splits by image)' if views > 1 else ''}"
                              "; render-cnn: a CNN on the INRs' renders"}
    for task, per_model in results.items():
        scored = [k for k in METRICS[task] if k != "mse_identity"]  # test metrics, then validation (selection)
        shown = list(METRICS[task]) + [f"val_{k}" for k in scored]
        rows_all = [r for rows in per_model.values() for r in rows]
        keys = shown + [k for k in ("graphs_per_s", "peak_mb") if any(k in r for r in rows_all)]
        zoo_name = zoos.get(task, f"digits-siren-shared, {args.n_images or 'all'} images")
        lines += [f"## {task} (zoo {zoo_name}; {task_epochs(str(args.epochs), task)} epochs; "
                  "test split, val_*: validation split)", "",
                  "| model | probes | lr | wd | seeds | " + " | ".join(keys) + " |",
                  "|---|---|---:|---:|---:|" + "---:|" * len(keys)]
        for model in [m for m in MODELS[task] if m in per_model]:
            (lr, wd), rows = select(task, [{"lr": None, "weight_decay": None, **r} for r in per_model[model]])
            probes = "none" if task.startswith("edit") else PROBES.get(model, "-" if model == "render-cnn" else "none")
            if task.startswith("classify") and model in ("gmn", "pna", "transformer"):  # INR zoos: the grid default
                probes = f"{COORDINATE_PROBES} learned"
            cells = [probes, f"{lr:g}" if lr else "-", f"{wd:g}" if wd else "-", str(len(rows))]
            for k in keys:
                v = np.array([r.get(k, np.nan) for r in rows], dtype=float)
                fmt = ".5f" if task.startswith("edit") else ".3f"
                cells.append(f"{v.mean():{fmt}} ± {v.std():{fmt}}" if k in shown else f"{v.mean():.0f}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
