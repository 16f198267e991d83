"""Benchmark: metanetwork training steps per second on batches of 32 Small-CNN-Zoo graphs.

DESIGN's setting: batch 32 small-CNN graphs, width 64, 4 layers. Every model trains on the same
batches (random weights of the Small CNN Zoo architecture, 4,970 parameters: speed does not depend
on the values). Reports graphs/s of forward + backward + AdamW step, best of --rounds timed rounds.

Usage: python benchmarks/train_step.py [--steps 20] [--threads 2] [--out benchmarks/results/train_step.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphs  # noqa: E402
from datasets.zoo.models import SmallCNN  # noqa: E402
from graphs.batch import flatten_state_dicts, rows_to_batch  # noqa: E402
from metanets import ModelConfig, build_model  # noqa: E402


def step(model, opt, batch, y, amp: bool) -> None:
    """One training step: forward, MSE loss, backward, AdamW update."""
    with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(batch)
    loss = torch.nn.functional.mse_loss(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="gmn,pna,transformer,nfn,statnn,deepsets,mlp")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CPU: needs AVX512-BF16/AMX to pay off)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (DESIGN's reference figures are CPU, 2 threads)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/train_step.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = [SmallCNN(1, 10, width=16, depth=3) for _ in range(args.batch * 4)]
    layout = graphs.trace(nets[0], torch.randn(2, 1, 28, 28))
    rows = flatten_state_dicts([n.state_dict() for n in nets], layout)
    batches = [rows_to_batch(rows[i:i + args.batch], layout) for i in range(0, len(rows), args.batch)]
    device = torch.device(args.device)
    batches = [b.to(device) for b in batches]
    y = torch.rand(args.batch, 1, device=device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    lines = [f"# Train-step throughput (batch {args.batch} Small CNN Zoo graphs, width {args.hidden}, "
             f"{args.layers} layers, torch {torch.__version__}, {where}"
             f"{', bf16 autocast' if args.amp else ', float32'})", "",
             "| model | graphs/s | ms/step |", "|---|---:|---:|"]
    for name in args.models.split(","):
        cfg = ModelConfig(name=name, out_dim=1, num_params=layout.num_params, num_norm_keys=len(layout.params),
                          normalize_by="param", layout_json=layout.to_json())
        cfg.gmn.hidden, cfg.gmn.layers, cfg.gmn.width = args.hidden, args.layers, graphs.compile_layout(layout).width
        cfg.gmn.max_layers = len(layout.params)
        cfg.baseline["hidden"] = 16 if name == "nfn" else args.hidden
        model = build_model(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)

        for b in batches[:2]:
            step(model, opt, b, y, args.amp)  # warm-up
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(model, opt, batches[i % len(batches)], y, args.amp)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, (time.perf_counter() - t0) / args.steps)
        lines.append(f"| {name} | {args.batch / best:,.0f} | {1000 * best:.1f} |")
        print(lines[-1], flush=True)
    if device.type == "cpu":
        lines += ["", "Reference figures on this machine kind (DESIGN.md): Neural Graphs PNA ~314 graphs/s, "
                  "GMN EdgeMPNN ~69, NFN-NP ~89; target for a GMN-class model: >= 1.5x Neural Graphs PNA (471)."]
    else:
        lines += ["", "DESIGN's reference figures are for its 2-core CPU machine; on a GPU compare the rows "
                  "of this table with each other."]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
