"""Weight manifold over widths on digits: accuracy against width ratio, four ways.

    PYTHONPATH=. python benchmarks/neumeta.py [--families mlp,cnn] [--seeds 0] [--epochs 30]
    PYTHONPATH=. python benchmarks/neumeta.py --families mlp,cnn --combine A.json,B.json --out C   # tables only

For each small family (an MLP, and a CNN with BatchNorm, not fused) and seed:

(a) the manifold (``train.py --task neumeta``, smoothing on, lr 3e-3 as (b)) sampled at every ratio;
(b) the network of that ratio trained alone from scratch with the full network's budget (same steps, batch, lr);
(c) structured magnitude pruning of the full network: keep the units with the largest L1 norm of incoming
    weights in every permutable group (``graphs.width.select_units``), BatchNorm statistics recomputed;
(d) the manifold without smoothing (``--no-smooth``).

One thread. Writes ``benchmarks/results/neumeta.{json,md,png}`` with the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import eval as eval_script  # noqa: E402
import graphs  # noqa: E402
import train as train_script  # noqa: E402
from datasets.zoo.data import load_digits_data  # noqa: E402
from graphs.cli import load_factory  # noqa: E402
from graphs.width import select_units  # noqa: E402
from metanets.hyper import recompute_bn_stats  # noqa: E402
from tasks.neumeta import EVAL_WIDTHS, test_accuracy  # noqa: E402

FAMILIES = '''import torch
from torch import nn


def mlp(width: float) -> nn.Module:
    h = max(1, round(32 * width))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))


def cnn(width: float) -> nn.Module:
    c, h = max(1, round(8 * width)), max(1, round(16 * width))
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, h, 3, padding=1),
                         nn.BatchNorm2d(h), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(h, 10))


class Block(nn.Module):
    """A residual block with BatchNorm (not fused): conv-BN-ReLU-conv-BN, plus the input, then ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return (x + self.b2(self.c2(self.b1(self.c1(x)).relu()))).relu()


def resnet(width: float) -> nn.Module:
    c = max(1, round(16 * width))
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), Block(c), Block(c),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


class Attention(nn.Module):
    """Multi-head self-attention whose inner width (heads x head width) is set apart from the model width."""

    def __init__(self, d: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q, self.k, self.v = (nn.Linear(d, heads * head_dim) for _ in range(3))
        self.o = nn.Linear(heads * head_dim, d)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (f(x).reshape(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class Layer(nn.Module):
    def __init__(self, d: int, heads: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.n1, self.att, self.n2 = nn.LayerNorm(d), Attention(d, heads, head_dim), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x):
        x = x + self.att(self.n1(x))
        return x + self.mlp(self.n2(x))


class ViT(nn.Module):
    """2x2 patches of an 8x8 digit (16 tokens), two pre-norm layers, mean-pooled tokens."""

    def __init__(self, head_dim: int, hidden: int, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, d, 2, stride=2)
        self.pos = nn.Parameter(torch.zeros(1, 16, d))
        self.layers = nn.Sequential(Layer(d, heads, head_dim, hidden), Layer(d, heads, head_dim, hidden))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.layers(t)).mean(1))


def vit(width: float) -> nn.Module:  # the model width, the heads' width and the MLP's hidden width scale
    return ViT(max(1, round(8 * width)), max(1, round(64 * width)), d=max(1, round(32 * width)))
'''
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
STEPS, BATCH, LR = 600, 64, 3e-3


def fit(net: nn.Module, data, seed: int) -> float:
    """Train ``net`` from its init for the fixed budget; returns seconds."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), LR)
    t0 = time.perf_counter()
    net.train()
    for _ in range(STEPS):
        i = torch.randint(0, len(data.x_train), (BATCH,))
        loss = nn.functional.cross_entropy(net(data.x_train[i]), data.y_train[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def bn_fresh(net: nn.Module, sd: dict, x: torch.Tensor) -> dict:
    """``sd`` with BatchNorm statistics recomputed on 4 batches of 64 (as the manifold's samples)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return sd
    return recompute_bn_stats(net, dict(sd), [x[i * 64:(i + 1) * 64] for i in range(4)])


def prune(make, full_sd: dict, r: float, x: torch.Tensor) -> tuple[nn.Module, dict]:
    """Keep the units of largest incoming L1 norm in every permutable group of the full network."""
    full_layout = graphs.trace(make(1.0), (x[:2],))
    net = make(r)
    small = graphs.trace(net, (x[:2],))
    keep = {}
    for g in full_layout.permutable_groups():
        k = small.groups[g.id].size
        score = torch.zeros(g.size, dtype=torch.float64)
        for p in full_layout.params:
            if p.direction is not None and p.axes[p.direction[1]] == ("a", g.id):
                w = full_sd[p.name].detach().double().movedim(p.direction[1], 0)
                score += w.reshape(g.size, -1).abs().sum(1)
        keep[g.id] = torch.sort(torch.topk(score, k).indices).values
    sd = select_units(full_sd, full_layout, keep)
    return net, bn_fresh(net, sd, x)


def commit() -> str:
    """The git commit of this checkout (``+dirty`` with uncommitted changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_family(name: str, fam_file: str, seed: int, epochs: int, work: str, extra_args: list[str]) -> dict:
    """Every column of one family and seed."""
    make, _ = load_factory(f"{fam_file}:{name}")
    data = load_digits_data()
    widths = [float(w) for w in EVAL_WIDTHS.split(",")]
    torch.manual_seed(seed)
    full = make(1.0)
    t_full = fit(full, data, seed)
    full_sd = {k: v.detach().clone() for k, v in full.state_dict().items()}
    ck = os.path.join(work, f"{name}_{seed}_full.pt")
    torch.save(full_sd, ck)
    out: dict = {"family": name, "seed": seed, "full_train_s": t_full, "widths": widths}
    # (b) individually trained, (c) pruned
    indiv, pruned, t_indiv = [], [], 0.0
    for r in widths:
        torch.manual_seed(seed)
        net = make(r)
        t_indiv += fit(net, data, seed)
        indiv.append(test_accuracy(net, {k: v.detach().clone() for k, v in net.state_dict().items()},
                                   data.x_test, data.y_test))
        pnet, psd = prune(make, full_sd, r, data.x_train)
        pruned.append(test_accuracy(pnet, psd, data.x_test, data.y_test))
    out.update(individual=indiv, pruned=pruned, individual_train_s=t_indiv)
    # (a) manifold, (d) without smoothing
    for key, extra in (("manifold", []), ("manifold_no_smoothing", ["--no-smooth"])):
        run = os.path.join(work, f"{name}_{seed}_{key}")
        t0 = time.perf_counter()
        train_script.main(["--task", "neumeta", "--factory", f"{fam_file}:{name}", "--checkpoint", ck,
                           "--dataset", "digits", "--out", run, "--epochs", str(epochs), "--seed", str(seed),
                           "--lr", str(LR),
                           "--threads", "1", "--quiet", "--overwrite", *extra_args, *extra])
        out[f"{key}_train_s"] = time.perf_counter() - t0
        res = eval_script.main([os.path.join(run, "best.pt"), "--threads", "1", "--no-plot"])
        out[key] = [row["accuracy"] for row in res["widths"]]
        out["trained_width"] = [row["trained_width"] for row in res["widths"]]
        if key == "manifold":
            out["smoothing"] = res["smoothing"]
    print(json.dumps({k: v for k, v in out.items() if k != "smoothing"}), flush=True)
    return out


def load_runs(paths: list[str], families: list[str]) -> tuple[dict, list[dict]]:
    """The settings and the runs of earlier results files (same epochs and manifold options), for ``families``."""
    files = []
    for path in paths:
        try:
            with open(path) as f:
                files.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"--combine {path}: not a readable results file of this benchmark ({e})") from None
    for key in ("epochs", "manifold_args", "individual_budget"):
        if len({json.dumps(d.get(key)) for d in files}) > 1:
            raise SystemExit(f"--combine: the files differ in {key} ({[d.get(key) for d in files]}); combine only runs "
                             "of the same settings")
    runs = [r for d in files for r in d["runs"] if r["family"] in families]
    seen = {(r["family"], r["seed"]) for r in runs}
    if len(seen) < len(runs):
        raise SystemExit("--combine: a family and seed appear in more than one file")
    missing = [f for f in families if not any(r["family"] == f for r in runs)]
    if missing:
        raise SystemExit(f"--combine: no runs of {', '.join(missing)} in {', '.join(paths)}")
    settings = {k: files[0][k] for k in ("epochs", "manifold_args", "individual_budget")}
    settings["commit"] = "/".join(dict.fromkeys(d["commit"] for d in files))
    settings["machine"] = files[0]["machine"]
    return settings, runs


def main() -> None:
    """Run the families and seeds (or combine earlier results files); write JSON, markdown and a plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="mlp,cnn")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=30, help="manifold training epochs (40 steps of 32 each)")
    parser.add_argument("--manifold-args", default="", help="more train.py options of the manifold runs, e.g. "
                                                            "'--distill-weight 1'")
    parser.add_argument("--combine", default="", help="comma-separated results .json files of earlier runs (e.g. "
                                                      "one per seed): write their joint table instead of running")
    parser.add_argument("--out", default="neumeta", help="results file stem in benchmarks/results/")
    args = parser.parse_args()
    families = args.families.split(",")
    if args.combine:
        settings, runs = load_runs(args.combine.split(","), families)
        result = {**settings, "dataset": "digits", "combined_from": args.combine.split(","), "runs": runs}
    else:
        torch.set_num_threads(1)
        work = tempfile.mkdtemp(prefix="neumeta_bench_")
        fam_file = os.path.join(work, "families.py")
        with open(fam_file, "w") as f:
            f.write(FAMILIES)
        runs = [run_family(n, fam_file, int(s), args.epochs, work, args.manifold_args.split())
                for n in families for s in args.seeds.split(",")]
        machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (1 thread), "
                   f"torch {torch.__version__}")
        result = {"commit": commit(), "machine": machine, "dataset": "digits", "epochs": args.epochs,
                  "manifold_args": args.manifold_args,
                  "individual_budget": {"steps": STEPS, "batch": BATCH, "lr": LR}, "runs": runs}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{args.out}.json"), "w") as f:
        json.dump(result, f, indent=2)
    report(result, families, args.out)


def report(result: dict, families: list[str], out: str) -> None:
    """The markdown table (mean ± std over seeds when there are several) and the plot of ``result``."""
    runs, budget, extra = result["runs"], result["individual_budget"], result["manifold_args"]
    seeds = sorted({r["seed"] for r in runs})
    cols = ["manifold", "individual", "pruned", "manifold_no_smoothing"]
    lines = [f"# Weight manifold over widths on digits (commit {result['commit']}, {result['machine']})", "",
             f"Test accuracy against width ratio, mean{' ± std' if len(seeds) > 1 else ''} over seeds "
             f"{','.join(map(str, seeds))}. Manifold: {result['epochs']} epochs of "
             f"train.py --task neumeta (defaults, lr {budget['lr']}{', ' + extra if extra else ''}); "
             f"individual: each width trained alone for {budget['steps']} steps of "
             f"{budget['batch']} (Adam {budget['lr']}), as the full network; pruned: the full network, top-L1 units "
             "per group, BatchNorm statistics recomputed. '*' = a width the manifold never trained at; gap = "
             "manifold - individual, per seed, then averaged.", ""]
    if result.get("combined_from"):
        lines[2] += f" Combined from {', '.join(os.path.basename(p) for p in result['combined_from'])}."
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), dpi=120, squeeze=False)
    for ax, fam in zip(axes[0], families, strict=True):
        rs = [r for r in runs if r["family"] == fam]
        vals = {c: np.array([r[c] for r in rs]) for c in cols}
        mean = {c: v.mean(0) for c, v in vals.items()}
        gap = vals["manifold"] - vals["individual"]
        seen = rs[0]["trained_width"]

        lines += [f"## {fam}", "", "| width | " + " | ".join(cols) + " | gap |", "|---:|" + "---:|" * (len(cols) + 1)]
        for i, w in enumerate(rs[0]["widths"]):
            lines.append(f"| {w}{'' if seen[i] else '*'} | " + " | ".join(
                f"{mean[c][i]:.3f}" + (f" ± {vals[c][:, i].std():.3f}" if len(rs) > 1 else "") for c in cols)
                         + f" | {gap[:, i].mean():+.3f} |")
        t = {k: np.mean([r[k] for r in rs]) for k in ("manifold_train_s", "individual_train_s", "full_train_s")}
        sm = rs[0]["smoothing"]
        lines += ["", f"Training cost: manifold {t['manifold_train_s']:.0f} s (after the full network, "
                      f"{t['full_train_s']:.0f} s) against {t['individual_train_s']:.0f} s for all "
                      f"{len(rs[0]['widths'])} widths separately. Smoothing (seed {rs[0]['seed']}): total variation "
                      f"{sm['before']:.1f} -> {sm['after']:.1f}.", ""]
        for c, style in zip(cols, ("o-", "s--", "x:", "^-."), strict=True):
            ax.plot(rs[0]["widths"], mean[c], style, label=c)
        ax.set_title(f"{fam} on digits ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
        ax.set_xlabel("width ratio")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"{out}.png"))
    with open(os.path.join(RESULTS, f"{out}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
