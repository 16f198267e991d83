"""Zoo I/O: write N small CNNs into HDF5 and read random batches back, next to one .pt file per model.

    python benchmarks/zoo_io.py            # 10,000 models (the issue's benchmark)
    python benchmarks/zoo_io.py --n 1000   # a quick run

Every figure is measured in this run, beside its in-run baseline, so the ratios hold on a noisy
machine. Writes ``benchmarks/results/zoo_io.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from torch_geometric.loader import DataLoader  # noqa: E402

import graphs  # noqa: E402
from datasets import ZooDataset, ZooLoader, ZooReader, ZooWriter  # noqa: E402
from datasets.convert import convert_folder  # noqa: E402


class SmallCNN(nn.Module):
    """The Small CNN Zoo architecture: three 3x3 convs of 16 channels, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 16, 3)
        self.conv3 = nn.Conv2d(16, 16, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean((2, 3)))


class PtFiles(Dataset):
    """The usual research layout: one .pt file per model, loaded and turned into a graph per sample."""

    def __init__(self, paths: list[str], layout: graphs.Layout) -> None:
        self.paths, self.layout = paths, layout

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> graphs.ParamGraph:
        return graphs.to_graph(torch.load(self.paths[i], weights_only=True), self.layout)


def rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def read_rate(loader, reads: int) -> float:
    """Graphs per second after the first batch (worker start-up excluded), over about ``reads`` graphs."""
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for batch in it:
        count += batch.num_graphs
        if count >= reads:
            break
    return rate(count, time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="models in the zoo (default 10,000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reads", type=int, default=4000, help="graphs read per read measurement")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the main process (default 1: loading runs tiny ops, for which intra-op "
                        "threads only add synchronization; DataLoader workers use 1 thread anyway)")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo_io.md"))
    args = p.parse_args()
    n, bs = args.n, args.batch_size
    torch.set_num_threads(args.threads)
    work = args.workdir or tempfile.mkdtemp(prefix="zoo_io_")
    os.makedirs(work, exist_ok=True)
    rows_out = []
    try:
        torch.manual_seed(0)
        layout = graphs.trace(SmallCNN(), (torch.zeros(1, 1, 28, 28),))
        base = graphs.flatten_state_dict(SmallCNN(), layout)
        vecs = base + 0.05 * torch.randn(n, layout.num_params)
        sds = [graphs.unflatten_state_dict(v, layout) for v in vecs]
        labels = np.random.default_rng(0).uniform(0.1, 0.99, n)
        print(f"{n} models of {layout.num_params} parameters; working in {work}")

        # ---------------------------------------------------------------- writing
        pt_dir = os.path.join(work, "pt")
        os.makedirs(pt_dir)
        paths = [os.path.join(pt_dir, f"model_{i:06d}.pt") for i in range(n)]
        t_pt = timed(lambda: [torch.save(sd, path) for sd, path in zip(sds, paths, strict=True)])
        pt_bytes = sum(os.path.getsize(path) for path in paths)
        npy = os.path.join(work, "rows.npy")
        t_npy = timed(lambda: np.save(npy, vecs.numpy()))
        h5 = os.path.join(work, "zoo.h5")

        def write_models():
            with ZooWriter(h5) as w:
                for i, sd in enumerate(sds):
                    w.add(sd, layout, labels={"test_acc": float(labels[i])})

        t_h5 = timed(write_models)
        h5_rows = os.path.join(work, "rows.h5")

        def write_rows():
            with ZooWriter(h5_rows) as w:
                w.add_rows(layout, vecs.numpy(), labels={"test_acc": labels})

        t_rows = timed(write_rows)
        h5_bytes = os.path.getsize(h5)
        conv = os.path.join(work, "converted.h5")
        k = min(n, 2000)
        t_conv = timed(lambda: convert_folder(pt_dir if k == n else _subset(pt_dir, paths[:k], work), conv,
                                              factory=SmallCNN, example_inputs=(torch.zeros(1, 1, 28, 28),),
                                              workers=os.cpu_count(), progress=False))
        rows_out += [
            ("write", "one .pt file per model (torch.save)", rate(n, t_pt), "baseline"),
            ("write", "np.save of all rows as one array", rate(n, t_npy), "limit"),
            ("write", "ZooWriter.add(state_dict) per model (flatten + buffered rows + fsync)", rate(n, t_h5),
             f"{rate(n, t_h5) / rate(n, t_npy):.0%} of np.save, {rate(n, t_h5) / rate(n, t_pt):.1f}x .pt"),
            ("write", "ZooWriter.add_rows (one [n, P] block)", rate(n, t_rows),
             f"{rate(n, t_rows) / rate(n, t_npy):.0%} of np.save"),
            ("write", f"convert a folder of {k} .pt files ({os.cpu_count()} loader processes)", rate(k, t_conv),
             f"{rate(k, t_conv) / rate(n, t_pt):.1f}x torch.save"),
        ]

        # ---------------------------------------------------------------- reading
        reads = min(args.reads, n - bs)
        gen = torch.Generator().manual_seed(0)
        ds = ZooDataset(h5, split=None, labels=("test_acc",))
        pt_ds = PtFiles(paths, layout)
        with ZooReader(h5) as r:
            params = r.params(layout.fingerprint)
            order = np.random.default_rng(1).integers(0, n, reads)
            t_raw = timed(lambda: [params[int(i)] for i in order])
        read_rows = [("read", "h5py: one random row at a time (no graph)", rate(reads, t_raw), "limit")]
        for workers in (0, 2):
            kw = {"num_workers": workers, "persistent_workers": False}
            base_rate = read_rate(DataLoader(pt_ds, bs, shuffle=True, generator=gen, **kw), reads)
            item_rate = read_rate(DataLoader(ds, bs, shuffle=True, generator=gen, **kw), reads)
            fast_rate = read_rate(ZooLoader(ds, bs, shuffle=True, generator=gen, **kw), reads)
            read_rows += [
                ("read", f"{workers} workers: .pt per model + graphs.to_graph, PyG DataLoader", base_rate, "baseline"),
                ("read", f"{workers} workers: ZooDataset + PyG DataLoader", item_rate,
                 f"{item_rate / base_rate:.1f}x .pt"),
                ("read", f"{workers} workers: ZooDataset + ZooLoader (batched gather)", fast_rate,
                 f"{fast_rate / base_rate:.1f}x .pt; raw rows / this = {rate(reads, t_raw) / fast_rate:.1f}"),
            ]
        rows_out += read_rows
        sizes = f"HDF5 file {h5_bytes / 1e6:.1f} MB; .pt files {pt_bytes / 1e6:.1f} MB in {n} files"
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report = _markdown(n, layout.num_params, bs, sizes, rows_out)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(report)
    print(report)


def _subset(pt_dir: str, paths: list[str], work: str) -> str:
    """A folder of hard links to the first ``len(paths)`` checkpoints (convert reads whole folders)."""
    sub = os.path.join(work, "pt_subset")
    os.makedirs(sub, exist_ok=True)
    for path in paths:
        os.link(path, os.path.join(sub, os.path.basename(path)))
    return sub


def _markdown(n: int, num_params: int, bs: int, sizes: str, rows: list) -> str:
    lines = [
        "# Zoo I/O benchmark (benchmarks/zoo_io.py)", "",
        f"{n} small CNNs ({num_params} parameters each), random batches of {bs}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) in the main process, load average {os.getloadavg()[0]:.1f}.",
        f"{sizes}.", "",
        "| stage | what | models/s (graphs/s) | ratio |", "|---|---|---:|---|",
    ]
    lines += [f"| {stage} | {what} | {value:,.0f} | {ratio} |" for stage, what, value, ratio in rows]
    lines += ["", "Targets (DESIGN.md): reading >= 10x per-file .pt loading + graph building; within 10x of raw "
              "row reads; writing >= 50% of one-array np.save.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
