"""Benchmark: how the cost of conversion, zoo reads and training steps grows with the work.

Three tables, each run with one torch thread by default:
  * conversion: networks of ~1k to ~25M parameters (MLPs and CNNs of growing width, a ResNet-50):
    ``graphs.trace`` once, the first ``graphs.to_graph`` (compiles the Layout) and later ones, and
    ``flatten_state_dicts`` (state_dicts -> zoo rows); params/s, models/s and the peak RSS of a fresh
    process per network;
  * zoo: zoos of 10^4, 10^5 and 10^6 small CNNs (7,650 float32 parameters, 30.6 KB a row; 10^6 rows are
    30.6 GB, more than this machine's RAM) written with ``ZooWriter.add_rows`` and read back in random
    batches of 32 (raw h5py rows, ``ZooDataset`` + PyG DataLoader, ``ZooLoader``), from disk (the file
    dropped from the page cache with ``posix_fadvise(DONTNEED)`` first) and, when it fits, from the cache;
  * step: one training step of the default GMN (``train_step.py``'s model and step) on graphs of 10^3 to
    10^6 edges, ms/step, edges/s and peak memory (ru_maxrss of a fresh process per size, or
    ``torch.cuda.max_memory_allocated``).

    python benchmarks/scaling.py                                  # everything (~1 h on 1 core)
    python benchmarks/scaling.py --parts step --device cuda       # one table, on a GPU
    python benchmarks/scaling.py --parts zoo --zoo-sizes 1e4,1e5  # smaller zoos only

Writes ``<out>.json`` and ``<out>.md``; a partial run replaces only its tables in an existing json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
warnings.filterwarnings("ignore")

from convert import timeit  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402
from trace_time import ResNet50, _commit  # noqa: E402
from zoo_io import read_rate  # noqa: E402

import graphs  # noqa: E402
from datasets import ZooDataset, ZooLoader, ZooReader, ZooWriter  # noqa: E402
from datasets.zoo.models import SmallCNN  # noqa: E402
from graphs.batch import flatten_state_dicts, rows_to_batch  # noqa: E402
from metanets import ModelConfig, build_model  # noqa: E402

PARTS = ("conversion", "zoo", "step")


# ------------------------------------------------------------------------------------------ networks
def mlp(width: int, inputs: int = 16) -> nn.Module:
    """``inputs -> width -> width -> 10`` with ReLUs: about ``width**2`` parameters (all of them edges)."""
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))


NETWORKS = {  # name -> (builder, example input shape)
    **{f"mlp w{w}": (lambda w=w: mlp(w), (2, 16)) for w in (16, 64, 256, 1024, 4096)},
    **{f"small cnn w{w}": (lambda w=w: SmallCNN(1, 10, width=w), (2, 1, 28, 28)) for w in (16, 64, 256, 1024)},
    "resnet50": (lambda: ResNet50().eval(), (1, 3, 224, 224)),
}
STEP_SIZES = {  # edges (~) -> (MLP width, graphs per batch); an MLP 16-w-w-10 graph has one edge per parameter
    "1e3": (20, 1), "1e4": (90, 1), "1e5": (305, 1), "1e6": (990, 1), "1e6 (1000 x 1e3)": (20, 1000),
}
ZOO_WIDTH = 20  # SmallCNN(1, 10, width=20): 7,650 parameters


# ------------------------------------------------------------------------------------------ helpers
def _machine(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "ram_gib": round(ram, 1), "load_average": round(os.getloadavg()[0], 2)}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _in_fresh_process(args: argparse.Namespace, part: str, name: str) -> dict:
    """Run one measurement in a new interpreter, so that its peak RSS is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", part, name, "--threads", str(args.threads),
           "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if out.returncode != 0:
        return {"name": name, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ conversion
def conversion_one(name: str) -> dict:
    """Trace, to_graph (first and again) and flatten one network; in this (fresh) process."""
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    model = build()
    sd = model.state_dict()
    rss_model = _max_rss_mb()
    t0 = time.perf_counter()
    layout = graphs.trace(model, (torch.randn(*shape),))
    t_trace = time.perf_counter() - t0
    p = layout.num_params
    t0 = time.perf_counter()
    g = graphs.to_graph(sd, layout)
    t_first = time.perf_counter() - t0
    edges = g.num_edges
    del g
    reps = max(3, min(200, 20_000_000 // p))
    t_again = timeit(lambda: graphs.to_graph(sd, layout), reps)
    n = max(2, min(2000, 20_000_000 // p))  # rows of about 80 MB at most
    sds = [sd] * n
    t_flat = timeit(lambda: flatten_state_dicts(sds, layout), 3) / n
    return {"name": name, "params": p, "edges": edges, "trace_s": t_trace, "to_graph_first_s": t_first,
            "to_graph_s": t_again, "flatten_s": t_flat, "flatten_models": n, "rss_model_mb": rss_model,
            "peak_rss_mb": _max_rss_mb()}


def run_conversion(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in NETWORKS:
        r = _in_fresh_process(args, "conversion", name)
        rows.append(r)
        print("conversion", json.dumps(r), flush=True)
    return rows


# ------------------------------------------------------------------------------------------ zoo
def _drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _cached_fraction(path: str) -> float | None:
    """Share of the file in the page cache (util-linux ``fincore``), None when it cannot be told."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], capture_output=True,
                             text=True, check=True).stdout.split()
        return int(out[0]) / os.path.getsize(path)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def _warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def _measure_reads(path: str, layout: graphs.Layout, n: int, reads: int, bs: int) -> dict:
    out = {}
    with ZooReader(path) as r:
        params = r.params(layout.fingerprint)
        order = np.random.default_rng(1).integers(0, n, reads)
        t0 = time.perf_counter()
        for i in order:
            params[int(i)]
        out["raw"] = reads / (time.perf_counter() - t0)
    ds = ZooDataset(path, split=None, labels=("test_acc",))
    gen = torch.Generator().manual_seed(0)
    out["dataset"] = read_rate(DataLoader(ds, bs, shuffle=True, generator=gen), min(reads, 2000))
    out["loader"] = read_rate(ZooLoader(ds, bs, shuffle=True, generator=gen), reads)
    return out


def run_zoo(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=ZOO_WIDTH)
    layout = graphs.trace(model, (torch.randn(2, 1, 28, 28),))
    block_rows = 4096
    rng = np.random.default_rng(0)
    base = graphs.flatten_state_dict(model, layout).numpy()
    block = (base + 0.05 * rng.standard_normal((block_rows, layout.num_params), dtype=np.float32)).astype(np.float32)
    acc = rng.uniform(0.1, 0.99, block_rows)
    made_dir = not os.path.exists(args.zoo_dir)
    os.makedirs(args.zoo_dir, exist_ok=True)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows = []
    for size in args.zoo_sizes:
        n = int(float(size))
        path = os.path.join(args.zoo_dir, f"zoo_{n}.h5")
        t0 = time.perf_counter()
        with ZooWriter(path, commit_interval=None) as w:  # one commit (fsync + rename) at the end
            for start in range(0, n, block_rows):
                k = min(block_rows, n - start)
                w.add_rows(layout, block[:k], labels={"test_acc": acc[:k]})
        t_write = time.perf_counter() - t0
        nbytes = os.path.getsize(path)
        r = {"models": n, "params": layout.num_params, "file_gb": nbytes / 1e9, "write_s": t_write,
             "write_models_s": n / t_write, "write_mb_s": nbytes / 1e6 / t_write, "reads": args.reads}
        print(f"zoo {n}: wrote {nbytes / 1e9:.2f} GB in {t_write:.1f} s", flush=True)
        _drop_cache(path)
        r["cached_before_cold"] = _cached_fraction(path)
        r["cold"] = _measure_reads(path, layout, n, args.reads, args.batch_size)
        r["cached_after_cold"] = _cached_fraction(path)
        if nbytes < 0.5 * ram:
            _warm(path)
            r["cached_before_warm"] = _cached_fraction(path)
            r["warm"] = _measure_reads(path, layout, n, args.reads, args.batch_size)
        r["load_average"] = round(os.getloadavg()[0], 2)
        rows.append(r)
        print("zoo", json.dumps(r), flush=True)
        if not args.keep_zoos:
            os.remove(path)
    if made_dir and not args.keep_zoos and not os.listdir(args.zoo_dir):
        os.rmdir(args.zoo_dir)  # only a folder made here, and only when empty
    return rows


# ------------------------------------------------------------------------------------------ step
def _gmn(layout: graphs.Layout) -> nn.Module:
    """``train_step.py``'s GMN: the default GMNConfig (hidden 64, 4 layers) sized for ``layout``."""
    cfg = ModelConfig(name="gmn", out_dim=1, num_params=layout.num_params, num_norm_keys=len(layout.params),
                      normalize_by="param", layout_json=layout.to_json())
    cfg.gmn.width, cfg.gmn.max_layers = graphs.compile_layout(layout).width, len(layout.params)
    return build_model(cfg)


def step_one(name: str, device: str) -> dict:
    """Time one size of training step in this (fresh) process."""
    width, count = STEP_SIZES[name]
    dev = torch.device(device)
    torch.manual_seed(0)
    nets = [mlp(width) for _ in range(count)]
    layout = graphs.trace(nets[0], (torch.randn(2, 16),))
    batch = rows_to_batch(flatten_state_dicts([m.state_dict() for m in nets], layout), layout).to(dev)
    model = _gmn(layout).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    y = torch.rand(count, 1, device=dev)
    rss_before = _max_rss_mb()

    def step() -> None:
        loss = torch.nn.functional.mse_loss(model(batch), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    step()  # warm-up (allocations, Adam state)
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    repeat = max(2, min(20, int(10 / max(first, 1e-3))))  # about 10 s of steps
    best = min(first, timeit(step, repeat))
    r = {"name": name, "mlp_width": width, "graphs": count, "edges": int(batch.num_edges),
         "nodes": int(batch.num_nodes), "ms_step": 1000 * best, "edges_s": batch.num_edges / best,
         "steps_timed": repeat + 1, "rss_before_mb": rss_before, "peak_rss_mb": _max_rss_mb()}
    if dev.type == "cuda":
        r["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return r


def run_step(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in args.step_sizes:
        r = _in_fresh_process(args, "step", name)
        rows.append(r)
        print("step", json.dumps(r), flush=True)
    return rows


# ------------------------------------------------------------------------------------------ report
def _f(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def _markdown(res: dict) -> str:
    lines = ["# Scaling (benchmarks/scaling.py)", ""]
    for part in PARTS:
        if part not in res:
            continue
        m = res[part]["meta"]
        mc = m["machine"]
        where = (f"commit {m['commit']}; {mc['cpu']}, {mc['cores']} cores, {mc['threads']} torch thread(s), torch "
                 f"{mc['torch']}, {mc['ram_gib']} GiB RAM, load average {mc['load_average']} at the start"
                 f"{', device ' + m['device'] if m.get('device') else ''}; command `{m['command']}`.")
        rows = res[part]["rows"]
        if part == "conversion":
            lines += ["## Conversion: trace, to_graph and flatten by network size", "", where, "",
                      "| network | params | edges | trace s | to_graph first s | to_graph s | to_graph Mparams/s "
                      "| to_graph models/s | flatten Mparams/s | flatten models/s | peak RSS MB |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in rows:
                if "error" in r:
                    lines.append(f"| {r['name']} | error: {r['error']} |")
                    continue
                p = r["params"]
                lines.append(f"| {r['name']} | {p:,} | {r['edges']:,} | {r['trace_s']:.2f} | "
                             f"{r['to_graph_first_s']:.4f} | {r['to_graph_s']:.5f} | "
                             f"{p / r['to_graph_s'] / 1e6:,.0f} | "
                             f"{1 / r['to_graph_s']:,.1f} | {p / r['flatten_s'] / 1e6:,.0f} | "
                             f"{1 / r['flatten_s']:,.1f} | {r['peak_rss_mb']:,.0f} |")
            lines += ["", "One fresh process per network (its peak RSS includes the model, the state_dict, the graph "
                      "and the flattened rows of `flatten models` copies). to_graph s: best of up to 200 calls after "
                      "the first; flatten: `flatten_state_dicts` of up to 2,000 state_dicts (at most ~80 MB of rows), "
                      "per model. trace s is paid once per architecture.", ""]
        elif part == "zoo":
            lines += ["## Zoo: writing and random-batch reads by zoo size", "", where, ""]
            lines += ["| models | file GB | write s | write models/s | write MB/s | read from | cached before | "
                      "raw h5py rows/s | ZooDataset + PyG DataLoader graphs/s | ZooLoader graphs/s |",
                      "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
            for r in rows:
                head = (f"| {r['models']:,} | {r['file_gb']:.2f} | {r['write_s']:.1f} | {r['write_models_s']:,.0f} | "
                        f"{r['write_mb_s']:,.0f} |")
                c = r["cold"]
                lines.append(f"{head} disk (dropped with fadvise; {_pct(r['cached_after_cold'])} cached after) | "
                             f"{_pct(r['cached_before_cold'])} | {c['raw']:,.0f} | {c['dataset']:,.0f} | "
                             f"{c['loader']:,.0f} |")
                if "warm" in r:
                    w = r["warm"]
                    lines.append(f"| | | | | | page cache (file read once) | {_pct(r['cached_before_warm'])} | "
                                 f"{w['raw']:,.0f} | {w['dataset']:,.0f} | {w['loader']:,.0f} |")
                else:
                    lines.append("| | | | | | page cache | - | not measured: the file is larger than half the "
                                 "RAM | | |")
            lines += ["", f"SmallCNN(1, 10, width={ZOO_WIDTH}) rows, float32, no compression, written with "
                      "`ZooWriter(commit_interval=None).add_rows` in blocks of 4,096 rows (the same random block "
                      "each time: speed does not depend on the values) including the final fsync and rename. "
                      "Reads: random rows, batch 32, 0 loader workers; raw h5py = one `params[i]` per random row "
                      "(no graph); the loaders build PyG batches of graphs. The disk rows start with the file "
                      "dropped from the page cache (`os.posix_fadvise(POSIX_FADV_DONTNEED)`; `drop_caches` is not "
                      "writable here); in the small zoos the rows read early are cached for the later ones "
                      "('cached after'). Raw h5py reads random rows across the whole file; the loaders' batches too.",
                      ""]
        else:
            lines += ["## Train step: default GMN by graph size", "", where, "",
                      "| edges (target) | graphs x MLP width | edges | nodes | ms/step | edges/s | peak RSS MB "
                      "| RSS before steps MB | CUDA peak MB |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            for r in rows:
                if "error" in r:
                    lines.append(f"| {r['name']} | error: {r['error']} |")
                    continue
                lines.append(f"| {r['name']} | {r['graphs']} x 16-{r['mlp_width']}-{r['mlp_width']}-10 | "
                             f"{r['edges']:,} | {r['nodes']:,} | {r['ms_step']:,.1f} | {r['edges_s']:,.0f} | "
                             f"{r['peak_rss_mb']:,.0f} | {r['rss_before_mb']:,.0f} | {_f(r.get('cuda_peak_mb'))} |")
            lines += ["", "GMN with the default GMNConfig (hidden 64, 4 layers, edge_depth 2, mean,max) as "
                      "`benchmarks/train_step.py` builds it; one step = forward, MSE loss, backward, AdamW "
                      "(foreach); best of about 10 s of steps after one warm-up step. One fresh process per size: "
                      "peak RSS is that process's ru_maxrss (model, batch, activations, gradients, Adam state).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of conversion,zoo,step")
    ap.add_argument("--zoo-sizes", default="1e4,1e5,1e6", help="models per zoo (comma-separated)")
    ap.add_argument("--zoo-dir", default="/work/scalezoo", help="scratch folder (its zoos are removed after)")
    ap.add_argument("--keep-zoos", action="store_true", help="keep the zoo files and --zoo-dir")
    ap.add_argument("--reads", type=int, default=4000, help="graphs read per read measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--step-sizes", default=",".join(STEP_SIZES), help=f"subset of {', '.join(STEP_SIZES)}")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the step table)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scaling"),
                    help="output path without extension")
    ap.add_argument("--one", nargs=2, metavar=("PART", "NAME"), help=argparse.SUPPRESS)  # internal: a fresh process
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        part, name = args.one
        r = conversion_one(name) if part == "conversion" else step_one(name, args.device)
        print(json.dumps(r))
        return
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown parts {bad}; choose from {PARTS}")
    args.zoo_sizes = [s for s in args.zoo_sizes.split(",") if s]
    args.step_sizes = [s for s in args.step_sizes.split(",") if s]
    unknown = [s for s in args.step_sizes if s not in STEP_SIZES]
    if unknown:
        ap.error(f"unknown step sizes {unknown}; choose from {list(STEP_SIZES)}")
    res = {}
    if os.path.exists(f"{args.out}.json"):
        with open(f"{args.out}.json") as f:
            res = json.load(f)
    runners = {"conversion": run_conversion, "zoo": run_zoo, "step": run_step}
    for part in parts:
        meta = {"commit": _commit(), "machine": _machine(args.threads), "command": "python " + " ".join(
            [os.path.relpath(__file__, ROOT), *sys.argv[1:]]), "device": args.device if part == "step" else None}
        t0 = time.perf_counter()
        res[part] = {"meta": meta, "rows": runners[part](args)}
        meta["seconds"] = round(time.perf_counter() - t0, 1)
        meta["load_average_end"] = round(os.getloadavg()[0], 2)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(f"{args.out}.json", "w") as f:
            json.dump(res, f, indent=1)
        with open(f"{args.out}.md", "w") as f:
            f.write(_markdown(res))
    print(_markdown(res))


if __name__ == "__main__":
    main()
