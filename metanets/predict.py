r"""Predict all parameters of your own network with a trained GHN and save a loadable state_dict.

    python -m metanets.predict runs/ghn/best.pt --model mynets.py:make_resnet OUT.safetensors \\
        --input-shape 1,3,32,32 [--bn-data digits|mnist1d|FOLDER]

The network is built by ``module:factory`` (a file path or an importable module), traced once with
an example input of ``--input-shape`` (or ``example_inputs()`` defined beside the factory), and the
GHN predicts every parameter in one forward pass. BatchNorm running statistics are recomputed on a
few batches of ``--bn-data`` when given; otherwise they stay at 0/1 (recompute them on your data
before using the network in eval mode). The saved file loads with ``model.load_state_dict``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import graphs
from graphs.errors import run_cli

__all__ = ["main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m metanets.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a GHN checkpoint written by train.py --task ghn")
    p.add_argument("out", help="output .safetensors (or .pt) state_dict")
    p.add_argument("--model", required=True, help="module:factory building your network (e.g. nets.py:make_net)")
    p.add_argument("--input-shape", action="append", help="example input shape for tracing, e.g. 1,1,8,8")
    p.add_argument("--bn-data", help="recompute BatchNorm statistics on this data (digits | mnist1d | folder)")
    p.add_argument("--bn-batches", type=int, default=4)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Predict, save and return the state_dict."""
    from graphs.__main__ import build_from_factory
    from metanets.hyper import ArchGraph, full_state_dict, recompute_bn_stats
    from metanets.models import load_checkpoint

    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"no GHN checkpoint at {args.checkpoint}; train one with train.py --task ghn")
    ghn = load_checkpoint(args.checkpoint, map_location=args.device)
    if not hasattr(ghn, "unit_codes"):
        raise ValueError(f"{args.checkpoint} is not a GHN checkpoint (train one with train.py --task ghn)")
    net, inputs = build_from_factory(args.model, args.input_shape)
    layout = graphs.trace(net, inputs)
    net = net.to(args.device)
    arch = ArchGraph.of(layout, ghn.config.hops)
    t0 = time.perf_counter()
    with torch.no_grad():
        params = ghn(arch)
    seconds = time.perf_counter() - t0
    if args.bn_data:
        from datasets.zoo.data import load_named_or_path

        x = load_named_or_path(args.bn_data).x_train.to(args.device)
        params = recompute_bn_stats(net, params, [x[i * 64:(i + 1) * 64] for i in range(args.bn_batches)])
    sd = {k: v.detach().cpu().contiguous() for k, v in full_state_dict(net, params).items()}
    net.load_state_dict(sd)  # proves the file will load into this architecture
    graphs.save_checkpoint(sd, args.out)
    n = sum(p.numel for p in layout.params if not p.is_buffer)
    print(f"predicted {n:,} parameters of {type(net).__name__} in {seconds:.3f} s; wrote {args.out}"
          + ("" if args.bn_data or not any(p.role == "running_mean" for p in layout.params) else
             " (BatchNorm running statistics are 0/1: pass --bn-data to recompute them)"))
    return sd


if __name__ == "__main__":
    run_cli(main)
