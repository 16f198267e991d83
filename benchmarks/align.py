"""Benchmark: loss barriers of naive vs aligned interpolation between independently trained networks.

For an MLP, a CNN, a ResNet with BatchNorm and a small transformer (nn.MultiheadAttention), trains
2 x PAIRS networks from different seeds on scikit-learn digits (CPU, one thread), aligns the second of
each pair to the first with ``graphs.align`` (weight matching, and activation matching on 512 training
images), and measures test loss and accuracy along the linear path. Networks with BatchNorm get their
running statistics recomputed on the training images at every point of every path (naive included).

    PYTHONPATH=$PWD python benchmarks/align.py            # ~10 min on one core
    PYTHONPATH=$PWD python benchmarks/align.py --quick    # one pair, fewer epochs (smoke test)

Writes benchmarks/results/align.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import torch
from torch import nn

import graphs
from graphs.interpolate import ClassData, has_running_stats, interpolation_path, load_class_data, shape_inputs

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# ------------------------------------------------------------------ models
def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(128 * 4, 128), nn.ReLU(), nn.Linear(128, 10))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = (nn.Sequential() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(h)) + self.short(x))


class ResNet(nn.Module):
    def __init__(self, w: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layers = nn.Sequential(Block(w, w, 1), Block(w, w, 1), Block(w, 2 * w, 2), Block(2 * w, 2 * w, 1))
        self.head = nn.Linear(2 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


class TransformerBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class Transformer(nn.Module):
    """Rows of the 8x8 image are 8 tokens of 8 features."""

    def __init__(self, d: int = 128, heads: int = 4, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(8, d) * 0.1)
        self.blocks = nn.Sequential(*(TransformerBlock(d, heads, hidden) for _ in range(layers)))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.inp(x) + self.pos)).mean(1))


ARCHS = {  # name -> (factory, example input, epochs, learning rate)
    "MLP 3x512": (mlp, torch.zeros(2, 64), 30, 1e-3),
    "CNN 64-64-128": (cnn, torch.zeros(2, 1, 8, 8), 30, 1e-3),
    "ResNet-BN (4 blocks, 64/128)": (ResNet, torch.zeros(2, 1, 8, 8), 20, 2e-3),
    "Transformer (2 layers, d128, 4 heads)": (Transformer, torch.zeros(2, 8, 8), 60, 1e-3),
}


# ------------------------------------------------------------------ training
def train(factory, data, seed: int, epochs: int, lr: float) -> nn.Module:
    torch.manual_seed(seed)
    model = factory()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(data.y_train) + 63) // 64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(data.y_train), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.node()} {cpu}, 1 thread, torch {torch.__version__}, python {platform.python_version()}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------ the benchmark
def trained(factory, data, seed, epochs, lr, cache, tag) -> tuple[nn.Module, float]:
    """A trained network and its training seconds (loaded from ``cache`` when it holds it)."""
    path = os.path.join(cache, f"{tag}-{seed}-{epochs}.pt") if cache else None
    if path and os.path.exists(path):
        model = factory()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), float("nan")
    t0 = time.perf_counter()
    model = train(factory, data, seed, epochs, lr)
    if path:
        os.makedirs(cache, exist_ok=True)
        torch.save(model.state_dict(), path)
    return model, time.perf_counter() - t0


def run_arch(name, factory, example, epochs, lr, raw, pairs: int, steps: int, cache: str | None) -> dict:
    data = ClassData(raw.name, shape_inputs(raw.x_train, example), raw.y_train,
                                        shape_inputs(raw.x_test, example), raw.y_test)
    layout = graphs.trace(factory(), example)
    norm = has_running_stats(factory())
    rows = []
    for k in range(pairs):
        (a, ta), (b, tb) = (trained(factory, data, s, epochs, lr, cache, factory.__name__) for s in (2 * k, 2 * k + 1))
        train_s = ta + tb
        sa, sb = a.state_dict(), b.state_dict()
        t0 = time.perf_counter()
        perm = graphs.align(sa, sb, layout)
        w_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        perm_norm = graphs.align(sa, sb, layout, normalize=True)
        n_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        perm_act = graphs.align(a, sb, layout, method="activations", data=data.x_train[:512])
        a_s = time.perf_counter() - t0
        sw, sa_ = graphs.apply_symmetry(sb, layout, perm), graphs.apply_symmetry(sb, layout, perm_act)
        sn = graphs.apply_symmetry(sb, layout, perm_norm)
        paths = {"naive": interpolation_path(a, sa, sb, data, steps, norm),
                 "weight matching": interpolation_path(a, sa, sw, data, steps, norm),
                 "weight matching, per-tensor": interpolation_path(a, sa, sn, data, steps, norm),
                 "activation matching": interpolation_path(a, sa, sa_, data, steps, norm)}
        if norm:
            paths["weight matching, stale BN stats"] = interpolation_path(a, sa, sw, data, steps, False)
        row = {"pair": k, "train_seconds": train_s, "weights_seconds": w_s, "normalized_seconds": n_s,
               "activations_seconds": a_s,
               "cosine_naive": graphs.similarity(sa, sb, layout), "cosine_aligned": graphs.similarity(sa, sw, layout),
               "paths": paths}
        rows.append(row)
        print(f"{name} pair {k}: train {train_s:.1f}s, align {w_s:.2f}s / {a_s:.2f}s; " + ", ".join(
            f"{p}: barrier {v['loss_barrier']:.3f} mid acc {v['acc'][steps // 2]:.3f}" for p, v in paths.items()),
            flush=True)
    return {"arch": name, "layout": repr(layout), "groups": len(layout.permutable_groups()),
            "parameters": layout.num_params, "batchnorm": norm, "epochs": epochs, "pairs": rows}


def summarize(res: dict, steps: int) -> dict:
    out = {}
    for path in res["pairs"][0]["paths"]:
        ps = [r["paths"][path] for r in res["pairs"]]
        out[path] = {"loss_barrier": float(np.mean([p["loss_barrier"] for p in ps])),
                     "loss_barrier_std": float(np.std([p["loss_barrier"] for p in ps])),
                     "acc_barrier": float(np.mean([p["acc_barrier"] for p in ps])),
                     "mid_acc": float(np.mean([p["acc"][steps // 2] for p in ps])),
                     "end_acc": float(np.mean([(p["acc"][0] + p["acc"][-1]) / 2 for p in ps]))}
    out["weights_seconds"] = float(np.mean([r["weights_seconds"] for r in res["pairs"]]))
    out["normalized_seconds"] = float(np.mean([r["normalized_seconds"] for r in res["pairs"]]))
    out["activations_seconds"] = float(np.mean([r["activations_seconds"] for r in res["pairs"]]))
    return out


def plot(results: list[dict], path: str) -> None:
    import matplotlib  # benchmark-only dependency
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(results), figsize=(4 * len(results), 6), squeeze=False)
    colors = {"naive": "tab:red", "weight matching": "tab:blue", "activation matching": "tab:green",
              "weight matching, per-tensor": "tab:purple",
              "weight matching, stale BN stats": "tab:gray"}
    for j, res in enumerate(results):
        for r in res["pairs"]:
            for name, p in r["paths"].items():
                lab = name if r["pair"] == 0 else None
                axes[0, j].plot(p["t"], p["loss"], color=colors[name], alpha=0.7, label=lab)
                axes[1, j].plot(p["t"], p["acc"], color=colors[name], alpha=0.7)
        axes[0, j].set_title(res["arch"], fontsize=9)
        axes[0, j].legend(fontsize=6)
        axes[0, j].set_ylabel("test loss")
        axes[1, j].set_ylabel("test accuracy")
        axes[1, j].set_xlabel("t")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_md(results, summaries, meta, path) -> None:
    lines = ["# Naive vs aligned interpolation (`benchmarks/align.py`)", "",
             f"Commit `{meta['commit']}`, {meta['machine']}. Data: scikit-learn digits (1,437 train / 360 test), "
             f"{meta['pairs']} pairs of networks trained from different seeds per architecture, {meta['steps']} points "
             "on each path. Barrier = max over t of test loss(t) minus the chord between the endpoints' losses "
             "(accuracy barrier: the same for the accuracy drop). Means (± std) over pairs. Networks with BatchNorm "
             "have their running statistics recomputed on the training images at every t (naive included). "
             "Weight matching: `graphs.align(a, b, layout)`; per-tensor: `normalize=True`; activations: "
             "`method='activations'` on 512 training images. Times are wall-clock on a shared machine.", "",
             "| network | params | naive loss barrier | weight matching | per-tensor weight matching "
             "| activation matching | naive acc barrier | aligned acc barrier (w / pt / act) "
             "| midpoint acc naive / w / pt / act | endpoint acc | align s (w / pt / act) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res, s in zip(results, summaries, strict=True):
        n, w, p, a = (s[k] for k in ("naive", "weight matching", "weight matching, per-tensor", "activation matching"))

        def cell(x, n=n):
            return (f"{x['loss_barrier']:.3f} ± {x['loss_barrier_std']:.3f} "
                    f"({n['loss_barrier'] / max(x['loss_barrier'], 1e-12):.1f}x smaller)")

        lines.append(f"| {res['arch']} | {res['parameters']:,} | {n['loss_barrier']:.3f} ± {n['loss_barrier_std']:.3f} "
                     f"| {cell(w)} | {cell(p)} | {cell(a)} | {n['acc_barrier']:.3f} "
                     f"| {w['acc_barrier']:.3f} / {p['acc_barrier']:.3f} / {a['acc_barrier']:.3f} "
                     f"| {n['mid_acc']:.3f} / {w['mid_acc']:.3f} / {p['mid_acc']:.3f} / {a['mid_acc']:.3f} "
                     f"| {n['end_acc']:.3f} | {s['weights_seconds']:.2f} / {s['normalized_seconds']:.2f} "
                     f"/ {s['activations_seconds']:.2f} |")
    for res, s in zip(results, summaries, strict=True):
        if "weight matching, stale BN stats" in s:
            st = s["weight matching, stale BN stats"]
            lines += ["", f"{res['arch']}, aligned but with the interpolated (stale) BatchNorm statistics: "
                      f"loss barrier {st['loss_barrier']:.3f}, midpoint accuracy {st['mid_acc']:.3f} (recomputed: "
                      f"{s['weight matching']['loss_barrier']:.3f}, {s['weight matching']['mid_acc']:.3f})."]
    lines += ["", "![paths](align.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="one pair, a quarter of the epochs; no result files")
    parser.add_argument("--only", help="run only architectures whose name contains this")
    parser.add_argument("--cache", help="folder to keep trained networks in (and reuse them from)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start_commit = commit()  # the code that produces the results, before any edit made while it runs
    raw = load_class_data("digits")
    pairs = 1 if args.quick else args.pairs
    results, summaries = [], []
    for name, (factory, example, epochs, lr) in ARCHS.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        res = run_arch(name, factory, example, max(2, epochs // 4) if args.quick else epochs, lr, raw, pairs,
                       args.steps, args.cache)
        results.append(res)
        summaries.append(summarize(res, args.steps))
    meta = {"commit": start_commit, "machine": machine(), "pairs": pairs, "steps": args.steps, "data": "digits"}
    for res, s in zip(results, summaries, strict=True):
        print(res["arch"], json.dumps({k: v for k, v in s.items()}, indent=None))
    if args.quick or args.only:
        return
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "align.json"), "w") as f:
        json.dump({"meta": meta, "results": results, "summary": dict(zip(ARCHS, summaries, strict=True))}, f,
                  indent=1)
    write_md(results, summaries, meta, os.path.join(RESULTS, "align.md"))
    plot(results, os.path.join(RESULTS, "align.png"))


if __name__ == "__main__":
    main()
