"""Side by side with GHN-2, predicting into the module: ours with ``out=`` against ours returning new tensors.

GHN-2's call ``ghn2(net, graphs)`` writes its predictions into ``net``'s parameters; ``GHN(arch)`` allocates a new
tensor per parameter (102 MB for a ResNet-50, first touched on every call). This runs ``../shared/peerbench``'s
GHN comparison (same ResNet-50, same configurations, 1 thread, interleaved rounds) with a third contender of
ours, ``ghn(arch, out=dict(net.named_parameters()))``, so all three are timed in one process.

Needs the peer environment: ``PEER_MIRRORS=... ../shared/peerbench/run.sh ghn`` once (it makes the venv and the
ppuda checkout), then::

    PYTHONPATH=. ~/.cache/weightgraph-peerbench/venv/bin/python benchmarks/ghn_vs_ghn2.py --rounds 9

Results: ``benchmarks/results/ghn_vs_ghn2.md``, with the commit and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "peerbench"))
import common  # noqa: E402  (../shared/peerbench)

import graphs  # noqa: E402
from metanets.hyper import GHN, ArchGraph, GHNConfig  # noqa: E402

common.one_thread()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/ghn_vs_ghn2.md"))
    args = ap.parse_args()
    common.add_project()
    common.add_shims(torchvision_stub=True)
    common.add_peer("ppuda")
    from ppuda.deepnets1m.graph import Graph, GraphBatch
    from ppuda.ghn.nn import GHN as GHN2

    torch.manual_seed(0)
    net_ours, net_ghn2 = common.ResNet50().eval(), common.ResNet50().eval()
    ghn2 = GHN2(max_shape=(64, 64, 16, 16), num_classes=1000, hypernet="gatedgnn", decoder="conv", weight_norm=True,
                ve=True, layernorm=True, hid=32, debug_level=0).eval()
    g2 = GraphBatch([Graph(net_ghn2, ve_cutoff=50)])
    g2.to_device("cpu")
    ghn = GHN(GHNConfig()).eval()
    arch = ArchGraph.of(graphs.trace(net_ours, (torch.zeros(1, 3, 224, 224),)), ghn.config.hops)
    params = dict(net_ours.named_parameters())

    with torch.no_grad():
        new = ghn(arch)
        into = ghn(arch, out=params)
    assert all(into[k] is params[k] and torch.equal(into[k], new[k]) for k in params), "out= differs"

    def ours_new():
        with torch.no_grad():
            return ghn(arch)

    def ours_into():
        with torch.no_grad():
            ghn(arch, out=params)

    def ghn2_given_graph():
        with torch.no_grad():
            ghn2(net_ghn2, g2)

    times = common.interleave({"ghn2": ghn2_given_graph, "ours_new": ours_new, "ours_into": ours_into},
                              args.rounds, warmup=1)
    med = {k: common.med(v) for k, v in times.items()}
    r_new = common.paired_ratio(times["ghn2"], times["ours_new"])
    r_into = common.paired_ratio(times["ghn2"], times["ours_into"])
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"# GHN-2 against our GHN, ResNet-50 (commit {commit}, {platform.machine()}, {os.cpu_count()} cores, "
             f"1 thread, torch {torch.__version__}, load {common.loadavg():.2f})", "",
             f"`PYTHONPATH=. .../peerbench/venv/bin/python benchmarks/ghn_vs_ghn2.py --rounds {args.rounds}`: "
             "median seconds over interleaved rounds; ratio = median paired GHN-2 / ours (> 1: ours faster).", "",
             "| contender | seconds | ratio GHN-2 / this |", "|---|---:|---:|",
             f"| GHN-2 given its graph, writing into the module | {med['ghn2']:.3f} | 1.00 |",
             f"| ours, new tensors (`ghn(arch)`) | {med['ours_new']:.3f} | {r_new:.2f} |",
             f"| ours, into the module (`ghn(arch, out=dict(net.named_parameters()))`) | {med['ours_into']:.3f} | "
             f"{r_into:.2f} |", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    common.run_main(main)
