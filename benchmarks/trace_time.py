"""Benchmark: where ``graphs.trace`` spends its time, on catalogue networks and two full-size ones.

Phases of one trace, each timed on its own (best of ``--repeat`` runs, one torch thread):
  * export: ``torch.export.export`` (non-strict), called by :func:`graphs.tracer.export`;
  * rules: the walk over the exported graph (:meth:`graphs.tracer.Tracer.run`), i.e. our symmetry rules;
  * layout: :func:`graphs.layout.build_layout` (resolving labels into the Layout);
  * to_graph: the first ``graphs.to_graph`` (compiling the Layout and gathering the weights), shown apart: it is
    not part of ``graphs.trace``.
"ours" is rules + layout, and "ours %" its share of export + rules + layout.

The full-size networks are written here: a ViT-Tiny-like model (patch 16 on 224 x 224, width 192, depth 12,
3 heads, packed qkv as timm writes it) and a ResNet-50-like model (bottleneck blocks 3-4-6-3, widths 64-2048).

Usage: python benchmarks/trace_time.py [--repeat 3] [--out benchmarks/results/trace_time]
Writes ``<out>.json`` and ``<out>.md`` with the git commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's graphs, and the catalogue in tests/

import graphs  # noqa: E402
from graphs.layout import build_layout, canonical_names  # noqa: E402
from graphs.rules import RULES, fallback  # noqa: E402
from graphs.tracer import Tracer, export  # noqa: E402
from tests.graphs.catalogue import ALL_CASES  # noqa: E402


# ------------------------------------------------------------------------------------------ networks
class Attention(nn.Module):
    """timm-style attention: one qkv Linear, ``reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``, SDPA, proj."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class ViTBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(dim), Attention(dim, heads), nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTTiny(nn.Module):
    """ViT-Tiny/16 shape: 224 x 224 input, 196 patches + class token, width 192, depth 12, 3 heads, MLP 768."""

    def __init__(self, dim: int = 192, depth: int = 12, heads: int = 3, classes: int = 1000) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, stride=16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 197, dim) * 0.02)
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads, 4 * dim) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)  # (B, 196, dim)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        return self.head(self.norm(self.blocks(h))[:, 0])


class Bottleneck(nn.Module):
    """torchvision-style bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4), BN after each, projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn3(self.conv3(h)) + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    """ResNet-50 shape: 7x7 stem, max-pool, stages of 3, 4, 6, 3 bottlenecks (widths 64-512), 1000 classes."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if j == 0 and i > 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


# ------------------------------------------------------------------------------------------ timing
def _models() -> list[tuple[str, Callable[[], nn.Module], tuple, bool]]:
    picked = ["mlp_relu", "resnet_two_stage", "tiny_vit", "convnext_blocks", "moe_batched_experts", "hf_bert",
              "hf_llama", "hf_resnet_bottleneck"]
    out = []
    for case in ALL_CASES:
        if case.name in picked:
            if case.hf:
                try:
                    __import__("transformers")
                except ImportError:
                    continue
            out.append((case.name, case.build, case.inputs(), False))
    out.append(("vit_tiny_full (batch 1)", lambda: ViTTiny().eval(), (torch.randn(1, 3, 224, 224),), True))
    out.append(("resnet50 (batch 1)", lambda: ResNet50().eval(), (torch.randn(1, 3, 224, 224),), True))
    return out


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def time_trace(model: nn.Module, inputs: tuple, repeat: int, to_graph: bool = True) -> dict:
    """Seconds of each phase of ``graphs.trace(model, inputs)`` (best of ``repeat``), and of one to_graph."""
    t_export, program = _best(lambda: export(model, inputs), repeat)
    canonical = canonical_names(model)

    def walk() -> Tracer:
        tracer = Tracer(program, RULES, fallback, canonical)
        tracer.run()
        return tracer

    t_rules, _ = _best(walk, repeat)
    walks = [walk() for _ in range(repeat)]  # build_layout changes its tracer: one fresh walk per run
    t_layout, layout = _best(lambda: build_layout(walks.pop(), model), repeat)
    t_graph = t_again = None
    if to_graph:
        t0 = time.perf_counter()
        g = graphs.to_graph(model, layout)
        t_graph = time.perf_counter() - t0
        del g
        layout._cache.clear()  # compile again, in a process whose memory has been used once
        t0 = time.perf_counter()
        graphs.to_graph(model, layout)
        t_again = time.perf_counter() - t0
    ours = t_rules + t_layout
    return {"params": sum(p.numel() for p in model.parameters()), "nodes": len(program.graph.nodes),
            "export_s": t_export, "rules_s": t_rules, "layout_s": t_layout, "ours_s": ours,
            "trace_s": t_export + ours, "ours_share": ours / (t_export + ours), "to_graph_s": t_graph,
            "to_graph_again_s": t_again,
            "groups": len(layout.group_sizes())}


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread, load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best is kept")
    parser.add_argument("--out", default="benchmarks/results/trace_time", help="output path without extension")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = {}
    header = (f"{'network':28s} {'params':>10s} {'fx nodes':>8s} {'export':>8s} {'rules':>7s} {'layout':>7s} "
              f"{'ours %':>6s} {'trace':>7s} {'to_graph':>8s} {'again':>6s}")
    t0 = time.perf_counter()
    graphs.trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    cold = time.perf_counter() - t0  # the first trace of a process pays torch's one-time set-up
    print(f"first trace in this process (a 3-4-2 MLP): {cold:.2f}s")
    print(header)
    for name, build, inputs, _big in _models():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build()
        r = time_trace(model, inputs, args.repeat)
        rows[name] = r
        print(f"{name:28s} {r['params']:10,d} {r['nodes']:8d} {r['export_s']:7.2f}s {r['rules_s']:6.3f}s "
              f"{r['layout_s']:6.3f}s {100 * r['ours_share']:5.1f}% {r['trace_s']:6.2f}s {_secs(r['to_graph_s']):>8s} "
              f"{_secs(r['to_graph_again_s']):>6s}",
              flush=True)
    meta = {"commit": _commit(), "machine": _machine(), "repeat": args.repeat, "first_trace_s": cold}
    with open(f"{args.out}.json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = ["# graphs.trace time by phase (benchmarks/trace_time.py)", "",
             f"Commit {meta['commit']}; {meta['machine']}; best of {args.repeat} runs per phase. The first trace "
             f"of a process (a 3-4-2 MLP) took {cold:.2f} s (torch's one-time set-up).", "",
             "| network | params | fx nodes | export s | rules s | layout s | ours % | trace s | to_graph s "
             "| again s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['params']:,} | {r['nodes']} | {r['export_s']:.2f} | {r['rules_s']:.3f} | "
              f"{r['layout_s']:.3f} | {100 * r['ours_share']:.1f} | {r['trace_s']:.2f} | {_secs(r['to_graph_s'])} | "
              f"{_secs(r['to_graph_again_s'])} |"
              for n, r in rows.items()]
    lines += ["", "ours = rules + layout (this project's code inside graphs.trace); ours % = its share of the trace. "
              "to_graph (first conversion, compiling the Layout) is not part of graphs.trace; again: the same after "
              "clearing the Layout's compiled cache, in a process that has used that much memory once (on this "
              "machine the first touch of fresh memory costs about 1 s per GiB).", ""]
    with open(f"{args.out}.md", "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
