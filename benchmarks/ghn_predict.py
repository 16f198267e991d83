"""Benchmark: time for a GHN to predict every parameter of a ResNet-50 (25.6M parameters) on CPU.

The ResNet-50 is Hugging Face's ``ResNetForImageClassification`` built from its config (bottleneck
blocks [3, 4, 6, 3], widths 256-2048, 1000 classes; nothing is downloaded). Reports the one-time
costs (trace, ArchGraph) and the prediction itself (median of ``--repeats`` after one warm-up call),
beside an in-run baseline: PyTorch's own random initialization of the same network
(``reset_parameters`` of every layer). GHN-2's published figure is 0.21 s on CPU.

Usage: python benchmarks/ghn_predict.py [--threads 2] [--checkpoint runs/ghn/best.pt]
Results: benchmarks/results/ghn_predict.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphs  # noqa: E402
from metanets.hyper import GHN, ArchGraph, GHNConfig  # noqa: E402
from tasks import load_model  # noqa: E402


class Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def timed(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the published GHN-2 figure is CPU)")
    ap.add_argument("--checkpoint", help="a trained GHN (default: an untrained GHN of the default config)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/ghn_predict.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                       embedding_size=64, num_labels=1000)
    net = Logits(ResNetForImageClassification(cfg)).eval()
    n = sum(p.numel() for p in net.parameters())
    t0 = time.perf_counter()
    layout = graphs.trace(net, (torch.zeros(1, 3, 224, 224),))
    t_trace = time.perf_counter() - t0
    if args.checkpoint:
        ghn = load_model(args.checkpoint)
    else:
        ghn = GHN(GHNConfig()).eval()
    t0 = time.perf_counter()
    arch = ArchGraph.of(layout, ghn.config.hops)
    t_arch = time.perf_counter() - t0
    device = torch.device(args.device)
    ghn, arch, net = ghn.to(device), arch.to(device), net.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def predict():
        with torch.no_grad():
            return ghn(arch)

    def init():
        with torch.no_grad():
            for m in net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()

    t_pred = timed(predict, args.repeats, sync)
    t_init = timed(init, args.repeats, sync)
    got = predict()
    assert all(got[p.name].shape == p.shape for p in layout.params if p.name in got)
    load = os.getloadavg()[0]
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU, {args.threads} threads, load average {load:.1f}")
    lines = [f"# GHN prediction time, ResNet-50 ({n:,} parameters; torch {torch.__version__}, {where})", "",
             f"GHN config: {ghn.config}", "",
             "| step | seconds |", "|---|---:|",
             f"| trace (once per architecture) | {t_trace:.3f} |",
             f"| ArchGraph (once per architecture) | {t_arch:.3f} |",
             f"| **GHN predicts all parameters** (median of {args.repeats}) | **{t_pred:.3f}** |",
             f"| in-run baseline: PyTorch random init of every layer | {t_init:.3f} |",
             "| published: GHN-2 on CPU | 0.21 |", ""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
