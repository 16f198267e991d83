"""Benchmark: the cost of probe features per graph, beside a metanetwork train step.

A batch of 32 small digits CNNs (the ``digits-cnn-demo`` architecture: 3 strided 3x3 convs of 8
channels on 8x8 images, 1,338 parameters), P=16 probe images from scikit-learn's digits, one thread.
Probing runs the networks' exported program with ``torch.vmap`` over the 32 networks (and over
chunks of probes when the program was exported with a batch smaller than P), or a Python loop.
For scale, a GMN train step (width 64, 4 layers) on the same batch is timed with and without probe
features (the three models take turns within each round, so machine noise hits them alike).
Best of ``--rounds`` rounds of ``--steps`` calls each.

Usage: python benchmarks/probes.py [--steps 20] [--rounds 5] [--out benchmarks/results/probes]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphs  # noqa: E402
from datasets.zoo.models import SmallCNN  # noqa: E402
from graphs.batch import flatten_state_dicts, rows_to_batch  # noqa: E402
from graphs.probes import ProbeNet  # noqa: E402
from graphs.tracer import export  # noqa: E402
from metanets import ModelConfig, build_model  # noqa: E402
from metanets.probes import ProbeFeatures  # noqa: E402


def best_time(fn, steps: int, rounds: int) -> float:
    """Best mean seconds per call of ``fn`` over ``rounds`` rounds of ``steps`` calls (after a warm-up)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def train_step(model, opt, batch, y) -> None:
    """Forward, MSE loss, backward, AdamW update."""
    loss = torch.nn.functional.mse_loss(model(batch), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def gmn(layout, probe=None, hidden: int = 64, layers: int = 4):
    """The GMN predictor of the train-step benchmark, optionally with probe features."""
    cfg = ModelConfig(name="gmn", out_dim=1, num_params=layout.num_params, num_norm_keys=len(layout.params),
                      normalize_by="param", layout_json=layout.to_json())
    cfg.gmn.hidden, cfg.gmn.layers, cfg.gmn.width = hidden, layers, graphs.compile_layout(layout).width
    cfg.gmn.max_layers = len(layout.params)
    cfg.gmn.probe_dim = probe.num_probes if probe is not None else 0
    torch.manual_seed(0)
    return build_model(cfg, probe)


def machine() -> str:
    """CPU, cores and torch version."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f} at the start")


def commit() -> str:
    """The checked-out git commit (and whether the tree has changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/probes", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = machine()
    torch.manual_seed(0)
    nets = [SmallCNN(1, 10, width=8, depth=3, padding=1).eval() for _ in range(args.batch)]
    one = torch.zeros(1, 1, 8, 8)  # zoo builders trace and export with a batch of one
    layout = graphs.trace(nets[0], one)
    rows = flatten_state_dicts([n.state_dict() for n in nets], layout)
    digits = load_digits()
    probes = torch.tensor(digits.images[:args.probes] / 16.0, dtype=torch.float32)[:, None]
    b, p = args.batch, args.probes

    results = []

    def add(what: str, seconds: float) -> None:
        results.append({"what": what, "ms_per_batch": 1000 * seconds, "us_per_graph": 1e6 * seconds / b})
        print(f"{what}: {1000 * seconds:.2f} ms / batch of {b}, {1e6 * seconds / b:.0f} us / graph", flush=True)

    t0 = time.perf_counter()
    net1 = ProbeNet(export(nets[0], one), layout)
    prep = time.perf_counter() - t0
    net_p = ProbeNet(export(nets[0], probes), layout)
    with torch.no_grad():
        add(f"probe, program exported with batch 1 (vmap over nets x {p} probes)",
            best_time(lambda: net1(rows, probes), args.steps, args.rounds))
        add(f"probe, program exported with batch {p} (vmap over nets)",
            best_time(lambda: net_p(rows, probes), args.steps, args.rounds))
        add("probe, loop over nets (the fallback)",
            best_time(lambda: net_p(rows, probes, vmap=False), max(1, args.steps // 4), args.rounds))
        add(f"reference: plain forward of each network on {p} images (loop)",
            best_time(lambda: [n(probes) for n in nets], args.steps, args.rounds))
    learned = torch.nn.Parameter(probes.clone())
    add("probe + backward to learned probes (batch-1 program)",
        best_time(lambda: net1(rows, learned).square().sum().backward(), args.steps, args.rounds))

    batch = rows_to_batch(rows, layout)
    y = torch.rand(b, 1)
    steps = {}
    for label, probe in (("GMN train step, no probes", None),
                         (f"GMN train step, {p} fixed probes", ProbeFeatures(net1, probes)),
                         (f"GMN train step, {p} learned probes", ProbeFeatures(net1, probes, learned=True))):
        model = gmn(layout, probe)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
        steps[label] = lambda m=model, o=opt: train_step(m, o, batch, y)
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.rounds):  # take turns: a noisy moment slows every model, not one
        for label, fn in steps.items():
            best[label] = min(best[label], best_time(fn, args.steps, 1))
    for label, seconds in best.items():
        add(label, seconds)

    meta = {"commit": commit(), "machine": where, "batch": b, "probes": p, "num_params": layout.num_params,
            "num_nodes": graphs.compile_layout(layout).num_nodes, "prepare_s": prep,
            "command": "python benchmarks/probes.py " + " ".join(sys.argv[1:])}
    lines = [f"# Probe features cost (benchmarks/probes.py, commit {meta['commit']})", "",
             f"{b} digits CNNs (3 strided 3x3 convs of 8 channels, {layout.num_params} parameters, "
             f"{meta['num_nodes']} graph nodes), P={p} digits images; {meta['machine']}. Preparing a ProbeNet "
             f"(export + site search + graph rewrite) took {1000 * prep:.0f} ms once.", "",
             "| what | ms / batch | us / graph |", "|---|---:|---:|"]
    lines += [f"| {r['what']} | {r['ms_per_batch']:.2f} | {r['us_per_graph']:.0f} |" for r in results]
    lines += ["", f"Command: `{meta['command'].strip()}`", ""]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({**meta, "results": results}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
