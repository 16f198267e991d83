"""Benchmark (indicative): GMN predicting test accuracy with and without probe features, StatNN beside it.

The ``make demo`` zoo (recipe ``digits-cnn-demo``, 160 runs: relu/tanh/gelu CNNs of one layout, so
three exported programs, one per activation, chosen per graph with ``batch.program``). Same model
(GMN width 64, 4 layers), optimizer (AdamW 1e-3, cosine), epochs and splits for every row; the
checkpoint with the best validation Kendall tau is scored on the test split. Probes: 16 training
images of the digits data (a different draw per seed); ``learned`` starts from them. A plain loop
written here (train.py does not take probes yet); tasks/ integration is the lead's.

Usage: python benchmarks/probes_predict.py [--work runs/bench] [--epochs 30] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphs  # noqa: E402
from benchmarks.probes import commit, machine  # noqa: E402
from datasets import ZooDataset  # noqa: E402
from datasets.zoo.build import build_zoo  # noqa: E402
from datasets.zoo.data import load_digits_data  # noqa: E402
from datasets.zoo.models import SmallCNN  # noqa: E402
from datasets.zoo.recipes import get_recipe  # noqa: E402
from graphs.probes import ProbeNet  # noqa: E402
from graphs.tracer import export  # noqa: E402
from metanets import ModelConfig, build_model  # noqa: E402
from metanets.probes import ProbeFeatures  # noqa: E402

ACTIVATIONS = ("relu", "tanh", "gelu")
MODES = ("none", "fixed", "learned", "statnn")


def batches(ds: ZooDataset, size: int, gen: torch.Generator | None = None):
    """Batches of ``ds`` (shuffled with ``gen``), each with ``program``: the index of its activation."""
    order = torch.randperm(len(ds), generator=gen).tolist() if gen is not None else list(range(len(ds)))
    for i in range(0, len(order), size):
        b = ds.get_batch(order[i:i + size])
        b.program = torch.tensor([ACTIVATIONS.index(a) for a in b.activation])
        yield b


def run(path: str, mode: str, seed: int, epochs: int, probes: int) -> dict:
    """Train one model; its best-validation Kendall tau and that checkpoint's test Kendall tau."""
    splits = {s: ZooDataset(path, s, labels=["test_acc", "activation"]) for s in ("train", "val", "test")}
    layout = next(iter(splits["train"].layouts.values()))
    y = splits["train"]._y[:, 0]
    mu, sd = float(y.mean()), float(y.std())
    cfg = ModelConfig(name="statnn" if mode == "statnn" else "gmn", out_dim=1, num_params=layout.num_params,
                      num_norm_keys=len(layout.params), normalize_by="param", layout_json=layout.to_json())
    cfg.gmn.width, cfg.gmn.max_layers = graphs.compile_layout(layout).width, len(layout.params)
    cfg.baseline["hidden"] = 64
    probe = None
    if mode in ("fixed", "learned"):
        x0 = torch.zeros(1, 1, 8, 8)
        nets = [ProbeNet(export(SmallCNN(1, 10, 8, 3, activation=a, padding=1).eval(), x0), layout)
                for a in ACTIVATIONS]
        images = torch.as_tensor(load_digits_data().x_train).float()
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:probes]
        probe = ProbeFeatures(nets, images[pick], learned=mode == "learned", squash=True)
        cfg.gmn.probe_dim = probes
    torch.manual_seed(seed)
    model = build_model(cfg, probe)
    model.normalizer.fit(batches(splits["train"], 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(splits["train"]) // 32))

    @torch.no_grad()
    def tau(ds: ZooDataset) -> float:
        model.eval()
        pred, true = zip(*[(model(b)[:, 0], b.y[:, 0]) for b in batches(ds, 64)], strict=True)
        model.train()
        return float(kendalltau(torch.cat(pred).numpy(), torch.cat(true).numpy())[0])

    best_val, test, gen, t0 = -2.0, float("nan"), torch.Generator().manual_seed(seed), time.perf_counter()
    for _ in range(epochs):
        for b in batches(splits["train"], 32, gen):
            loss = torch.nn.functional.mse_loss(model.model(b)[:, 0], (b.y[:, 0] - mu) / sd)  # standardized
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val = tau(splits["val"])
        if val > best_val:
            best_val, test = val, tau(splits["test"])
    return {"mode": mode, "seed": seed, "val_tau": best_val, "test_tau": test, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/bench", help="folder for the zoo (built once)")
    ap.add_argument("--n-runs", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/probes_predict", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = machine()
    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, f"digits-cnn-demo-{args.n_runs}.h5")
    if not os.path.exists(path):
        build_zoo(get_recipe("digits-cnn-demo", n_runs=args.n_runs), path, progress=True)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for mode in MODES:
            results.append(run(path, mode, seed, args.epochs, args.probes))
            print(json.dumps(results[-1]), flush=True)
    sizes = {s: len(ZooDataset(path, s)) for s in ("train", "val", "test")}
    lines = [f"# Probe features on the demo zoo (benchmarks/probes_predict.py, commit {commit()})", "",
             f"digits-cnn-demo, {args.n_runs} runs ({sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test "
             f"networks), GMN width 64 x 4 layers, {args.epochs} epochs, {len(args.seeds.split(','))} seeds, "
             f"P={args.probes}; {where}. Kendall tau of predicted vs. true test accuracy (test: the "
             f"best-validation epoch). Indicative: {sizes['test']} test networks.", "",
             "| model | val tau | test tau | s / run |", "|---|---:|---:|---:|"]
    for mode in MODES:
        rs = [r for r in results if r["mode"] == mode]
        v, t = np.array([r["val_tau"] for r in rs]), np.array([r["test_tau"] for r in rs])
        name = {"none": "GMN, no probes", "fixed": "GMN + fixed probes", "learned": "GMN + learned probes",
                "statnn": "StatNN"}[mode]
        lines.append(f"| {name} | {v.mean():.3f} ± {v.std():.3f} | {t.mean():.3f} ± {t.std():.3f} | "
                     f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    lines += ["", f"Command: `python benchmarks/probes_predict.py {' '.join(sys.argv[1:])}`".replace("  ", " "), ""]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"commit": commit(), "machine": where, "results": results}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
