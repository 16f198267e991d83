"""Train a metanetwork on a zoo of parameter graphs.

    python train.py --data zoo.h5 --task predict --model gmn --target test_acc
    python train.py --task ghn --archs archs.h5 --dataset digits  # a graph hypernetwork (GHN)
    torchrun --nproc-per-node 4 train.py --data zoo.h5 ...     # the same script, DDP

Reads top to bottom: config -> data -> model -> optimizer -> loop (tqdm) with validation each
epoch -> best/last checkpoints that hold everything eval.py needs (configs, normalization,
target scaling, label names). ``--device auto`` uses CUDA with bf16 autocast when present.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, fields

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # our `datasets`, not Hugging Face's

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402

import graphs  # noqa: E402
from datasets import ZooDataset  # noqa: E402
from datasets.loader import make_loader, set_epoch  # noqa: E402
from datasets.transforms import RandomSymmetry  # noqa: E402
from graphs.batch import batch_to_rows  # noqa: E402
from graphs.errors import run_cli  # noqa: E402
from metanets import ModelConfig, build_model  # noqa: E402
from metanets.inr import SirenRenderer, edit_image  # noqa: E402
from metanets.metrics import classification_metrics, regression_metrics  # noqa: E402
from metanets.models import GRAPH_MODELS  # noqa: E402


@dataclass
class TrainConfig:
    """Every option of a training run (stored in the checkpoint)."""

    data: str = ""  # zoo .h5 file
    task: str = "predict"  # predict | classify | edit | ghn
    model: str = "gmn"  # gmn | pna | transformer | nfn | statnn | mlp | deepsets
    target: str = ""  # label column (default: test_acc for predict, class for classify)
    edit: str = "dilate"  # edit task: the image edit the INRs should learn (dilate | contrast)
    image_size: int = 8  # edit task: INR render resolution
    out: str = "runs/run"  # output folder (checkpoints, metrics, plots)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    layers: int = 4
    layer_ids: bool = True  # embed parameter (layer) identity; off for mixed-architecture zoos
    aggr: str = ""  # gmn layer: aggregations, e.g. mean,max (default: GMNConfig's)
    edge_depth: int = 0  # gmn layer: edge-update depth, 1 or 2 (0: GMNConfig's default)
    readout_stats: bool = False  # graph predictors: add StatNN's per-tensor statistics to the readout
    augment: bool = False  # random neuron-permutation augmentation of training graphs
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dist_backend: str = "auto"  # under torchrun: auto (NCCL on CUDA, Gloo on CPU) | nccl | gloo
    amp: bool = True  # bf16 autocast on CUDA
    workers: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)
    train_split: str = "train"
    val_split: str = "val"
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit)
    quiet: bool = False
    # --task ghn: a hypernetwork trained on the task loss of the networks it predicts
    archs: str = ""  # architectures .h5 (python -m datasets archs)
    dataset: str = "digits"  # digits | mnist1d | a folder (MNIST idx, CIFAR-10 pickles, ROOT/<class>/*.png)
    meta_batch: int = 8  # architectures per optimizer step
    rank: int = 32  # CP rank of every decoded tensor
    hops: int = 4  # virtual-edge range of the architecture graph
    symmetry_breaking: str = "position"  # position | noise
    val_archs: int = 32  # validation architectures scored after every epoch


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command line -> TrainConfig (every field is a flag)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(TrainConfig):
        if f.type == "bool":
            p.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type={"int": int, "float": float}.get(f.type, str),
                           default=f.default)
    cfg = TrainConfig(**vars(p.parse_args(argv)))
    if cfg.task not in ("predict", "classify", "edit", "ghn"):
        p.error(f"--task {cfg.task}: choose predict, classify, edit or ghn")
    if cfg.dist_backend not in ("auto", "nccl", "gloo"):
        p.error(f"--dist-backend {cfg.dist_backend}: choose auto, nccl or gloo")
    if cfg.edge_depth not in (0, 1, 2):
        p.error(f"--edge-depth {cfg.edge_depth}: choose 1 (GatedGCN-style) or 2 (two-layer MLP)")
    if cfg.task == "ghn":
        if not cfg.archs:
            p.error("--task ghn needs --archs ARCHS.h5 (make one with: python -m datasets archs N ARCHS.h5)")
        cfg.model = "ghn"
        cfg.archs = os.path.abspath(cfg.archs)  # eval.py finds it from any folder
        return cfg
    if not cfg.data:
        p.error("--data ZOO.h5 is required")
    cfg.target = cfg.target or {"predict": "test_acc", "classify": "class", "edit": ""}[cfg.task]
    return cfg


def setup_device(cfg: TrainConfig) -> tuple[torch.device, int, int]:
    """Pick the device; under torchrun, join the process group (NCCL on CUDA, Gloo on CPU by default).

    Ranks are spread over the visible GPUs (local rank modulo their count); several ranks on one GPU
    need ``--dist-backend gloo``, since NCCL refuses two ranks on one device.
    """
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            local %= torch.cuda.device_count()
            torch.cuda.set_device(local)
        backend = cfg.dist_backend if cfg.dist_backend != "auto" else ("nccl" if cuda else "gloo")
        dist.init_process_group(backend)
        return torch.device(f"cuda:{local}" if cuda else "cpu"), rank, world
    if cfg.device == "auto":
        return torch.device("cuda" if cuda else "cpu"), rank, world
    return torch.device(cfg.device), rank, world


def edit_images(model, batch, layout, renderer, edit: str) -> tuple[torch.Tensor, ...]:
    """Edit task: (INR image, target = edit(image), image drawn by the edited INR), each ``[B, H, W]``."""
    before = renderer(batch_to_rows(batch, layout))
    target = edit_image(edit, before).detach()
    after = renderer(batch_to_rows(model(batch), layout))
    return before.detach(), target, after


@torch.no_grad()
def evaluate(model, loader, cfg: TrainConfig, device: torch.device, autocast, edit_ctx=None) -> dict:
    """Validation metrics of ``model`` on every batch of ``loader`` (predictions in target units)."""
    model.eval()
    preds, trues, sq, sq0, n = [], [], 0.0, 0.0, 0
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        with autocast():
            if cfg.task == "edit":
                before, target, after = edit_images(model, batch, *edit_ctx, cfg.edit)
                sq += float((after.float() - target).square().mean((1, 2)).sum())
                sq0 += float((before - target).square().mean((1, 2)).sum())
                n += batch.num_graphs
                continue
            out = model(batch)
        preds.append(out.float().cpu().numpy())
        trues.append(batch.y.float().cpu().numpy())
    if cfg.task == "edit":  # mse_identity: the error of leaving the INR unedited, for scale
        return {"mse": sq / max(n, 1), "mse_identity": sq0 / max(n, 1)}
    pred, true = np.concatenate(preds), np.concatenate(trues)
    return regression_metrics(pred, true) if cfg.task == "predict" else classification_metrics(pred, true)


def main(argv: list[str] | None = None) -> dict:
    """Train; returns the best validation metrics."""
    cfg = parse_args(argv)
    device, rank, world = setup_device(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.task == "ghn":
        return train_ghn(cfg, device, rank, world)
    master = rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)

    # ---------------------------------------------------------------- data
    transform = RandomSymmetry() if cfg.augment else None
    labels = [cfg.target] if cfg.target else []
    train_ds = ZooDataset(cfg.data, cfg.train_split, labels=labels, transform=transform)
    val_ds = ZooDataset(cfg.data, cfg.val_split, labels=labels)
    layouts = list(train_ds.layouts.values())
    single = len(layouts) == 1
    width = max(graphs.compile_layout(lay).width for lay in layouts)
    pin = device.type == "cuda"
    train_loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, rank=rank, world=world,
                               workers=cfg.workers, pin_memory=pin)
    val_loader = make_loader(val_ds, cfg.batch_size, workers=cfg.workers, pin_memory=pin)
    y_train = train_ds._y[:, 0].numpy() if labels else np.zeros(1)
    out_dim = int(max(y_train.max(), val_ds._y[:, 0].numpy().max())) + 1 if cfg.task == "classify" else 1
    edit_ctx = None
    if cfg.task == "edit":
        if not single:
            raise SystemExit("error: --task edit needs a zoo of one architecture (an INR zoo)")
        edit_ctx = (layouts[0], SirenRenderer(layouts[0], (cfg.image_size, cfg.image_size)).to(device))

    # --------------------------------------------------------------- model
    mcfg = ModelConfig(name=cfg.model, task=cfg.task, out_dim=out_dim,
                       num_params=layouts[0].num_params if single else 0,
                       num_norm_keys=len(layouts[0].params) if single else len(graphs.EDGE_TYPES),
                       normalize_by="param" if single else "type",
                       layout_json=layouts[0].to_json() if single else None)
    mcfg.gmn.hidden, mcfg.gmn.layers, mcfg.gmn.width = cfg.hidden, cfg.layers, width
    mcfg.gmn.max_layers = len(layouts[0].params) if (single and cfg.layer_ids) else 0
    mcfg.gmn.aggr = cfg.aggr or mcfg.gmn.aggr
    mcfg.gmn.edge_depth = cfg.edge_depth or mcfg.gmn.edge_depth
    if cfg.readout_stats and not (single and cfg.model in GRAPH_MODELS and cfg.task != "edit"):
        raise SystemExit("error: --readout-stats needs a graph model (gmn, pna, transformer), a predict or classify "
                         "task and a zoo of one architecture (per-tensor statistics are per layout)")
    mcfg.gmn.readout_stats = cfg.readout_stats
    mcfg.baseline.setdefault("hidden", cfg.hidden)
    model = build_model(mcfg)
    stats_batches = (b for i, b in zip(range(50), make_loader(train_ds, 64), strict=False))
    model.normalizer.fit(stats_batches)  # training-split statistics only
    if cfg.task == "predict":
        model.mean.fill_(float(y_train.mean()))
        model.std.fill_(float(y_train.std()) or 1.0)
    model.to(device)
    n_weights = sum(p.numel() for p in model.parameters())
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    total = cfg.epochs * len(train_loader)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    use_amp = cfg.amp and device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    def loss_fn(batch) -> torch.Tensor:
        if cfg.task == "edit":
            _, target, after = edit_images(ddp, batch, *edit_ctx, cfg.edit)
            return torch.nn.functional.mse_loss(after.float(), target)
        if cfg.task == "predict":  # compare in standardized units; always through ddp(...) so DDP syncs
            out = (ddp(batch).float() - model.mean) / model.std
            y = (batch.y[:, :1] - model.mean) / model.std
            return torch.nn.functional.mse_loss(out, y)
        return torch.nn.functional.cross_entropy(ddp(batch).float(), batch.y[:, 0].long())

    if master and not cfg.quiet:
        print(f"train: {len(train_ds)} graphs, val: {len(val_ds)}; model {cfg.model} ({n_weights:,} weights) "
              f"on {device}{' x' + str(world) if world > 1 else ''}; target {cfg.target}")

    # ---------------------------------------------------------------- loop
    best, best_metrics, step, seen, t_train = -float("inf"), {}, 0, 0, 0.0
    history = []
    # best.pt: lowest validation RMSE (regression; rank correlation on a small validation split is a
    # noisy selector), highest accuracy (classification), lowest MSE (edit)
    key = {"predict": "rmse", "classify": "accuracy", "edit": "mse"}[cfg.task]
    sign = 1.0 if cfg.task == "classify" else -1.0  # +1: higher is better
    for epoch in range(cfg.epochs):
        set_epoch(train_loader, epoch)
        ddp.train()
        t0 = time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not master or cfg.quiet,
                   leave=False)
        losses = []
        for batch in bar:
            batch = batch.to(device, non_blocking=True)
            with autocast():
                loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            seen += batch.num_graphs
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        t_train += time.perf_counter() - t0
        metrics = evaluate(model, val_loader, cfg, device, autocast, edit_ctx)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), **metrics})
        if master:
            if not cfg.quiet:
                print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f} " +
                      " ".join(f"val_{k} {v:.4f}" for k, v in metrics.items()))
            ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "model_config": mcfg.to_dict(),
                    "train_config": asdict(cfg), "step": step, "epoch": epoch + 1, "metrics": metrics,
                    "label_names": labels, "history": history}
            torch.save(ckpt, os.path.join(cfg.out, "last.pt"))
            if sign * metrics[key] > best:
                best, best_metrics = sign * metrics[key], metrics
                torch.save(ckpt, os.path.join(cfg.out, "best.pt"))
        if cfg.max_steps and step >= cfg.max_steps:
            break
    summary = {"best_val": best_metrics, "train_graphs_per_s": seen * world / max(t_train, 1e-9), "steps": step,
               "peak_mem_mb": peak_memory_mb(device)}
    return finish(cfg, summary, history, master, world,
                  f"done: best val {key} {sign * best:.4f}; {summary['train_graphs_per_s']:.0f} graphs/s")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: allocated CUDA memory, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finish(cfg: TrainConfig, summary: dict, history: list, master: bool, world: int, done: str) -> dict:
    """Write ``train_summary.json`` (rank 0), print the closing line, leave the process group."""
    if master:
        with open(os.path.join(cfg.out, "train_summary.json"), "w") as f:
            json.dump({"config": asdict(cfg), **summary, "history": history}, f, indent=2)
        if not cfg.quiet:
            print(f"{done}; checkpoints in {cfg.out}")
    if world > 1:
        dist.destroy_process_group()
    return summary


def train_ghn(cfg: TrainConfig, device: torch.device, rank: int, world: int) -> dict:
    """``--task ghn``: meta-train a graph hypernetwork on the task loss of the networks it predicts.

    Every step draws ``meta_batch`` training architectures and one batch of images; the GHN predicts
    all parameters of each architecture, the predicted networks classify the batch (``functional_call``,
    BatchNorm on batch statistics), and the mean cross-entropy trains the GHN. After every epoch the
    GHN predicts the validation architectures, recomputes their BatchNorm statistics on a few training
    batches, and scores them on held-out training images (10%; the test images are eval.py's).
    """
    from datasets.archs import ArchsReader
    from datasets.zoo.data import load_named_or_path
    from metanets.hyper import GHN, ArchGraph, GHNConfig
    from metanets.hyper.meta import GHNLoss, accuracy, predict_params

    master = rank == 0
    torch.manual_seed(cfg.seed + rank)
    os.makedirs(cfg.out, exist_ok=True)
    # ---------------------------------------------------------------- data
    data = load_named_or_path(cfg.dataset)
    n_val = max(1, len(data.x_train) // 10)
    perm = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    x_tr, y_tr = data.x_train[perm[n_val:]].to(device), data.y_train[perm[n_val:]].to(device)
    x_va, y_va = data.x_train[perm[:n_val]].to(device), data.y_train[perm[:n_val]].to(device)
    with ArchsReader(cfg.archs) as reader:
        shape = tuple(int(s) for s in data.x_train.shape[1:])
        if tuple(reader.input_shape) != shape or reader.num_classes != data.num_classes:
            raise SystemExit(f"error: {cfg.archs} holds architectures for inputs {tuple(reader.input_shape)} and "
                             f"{reader.num_classes} classes, but {cfg.dataset} has inputs {shape} and "
                             f"{data.num_classes} classes; sample architectures for this data with "
                             f"python -m datasets archs N OUT.h5 --dataset ...")
        train_ids = reader.split(cfg.train_split)
        val_ids = reader.split(cfg.val_split)[:cfg.val_archs]
        nets = {int(i): reader.build(int(i)).to(device) for i in np.concatenate([train_ids, val_ids])}
        archs = {int(i): ArchGraph.of(reader.layout(int(i)), cfg.hops).to(device) for i in nets}
    # --------------------------------------------------------------- model
    gcfg = GHNConfig(hidden=cfg.hidden, layers=cfg.layers, rank=cfg.rank, hops=cfg.hops,
                     symmetry_breaking=cfg.symmetry_breaking)
    ghn = GHN(gcfg).to(device)
    loss_module = GHNLoss(ghn)
    ddp = torch.nn.parallel.DistributedDataParallel(
        loss_module, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True) \
        if world > 1 else loss_module
    opt = torch.optim.AdamW(ghn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    steps_per_epoch = max(1, len(train_ids) // (cfg.meta_batch * world))
    total = cfg.epochs * steps_per_epoch if not cfg.max_steps else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    use_amp = cfg.amp and device.type == "cuda"
    if master and not cfg.quiet:
        print(f"ghn: {len(train_ids)} training / {len(val_ids)} validation architectures on {cfg.dataset} "
              f"({len(x_tr)} / {len(x_va)} images); {sum(p.numel() for p in ghn.parameters()):,} weights on "
              f"{device}{' x' + str(world) if world > 1 else ''}")
    bn_batches = [x_tr[i:i + 64] for i in range(0, min(len(x_tr), 256), 64)]

    # ---------------------------------------------------------------- loop
    rng = np.random.default_rng(cfg.seed)
    best, best_metrics, step, seen, t_train, history = -1.0, {}, 0, 0, 0.0, []
    for epoch in range(cfg.epochs):
        order = rng.permutation(train_ids)  # the same on every rank; each takes its own slice
        ghn.train()
        t0 = time.perf_counter()
        losses, accs = [], []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not master or cfg.quiet,
                   leave=False)
        for k in bar:
            start = (k * world + rank) * cfg.meta_batch
            ids = [int(i) for i in order[start:start + cfg.meta_batch]]
            idx = torch.randint(0, len(x_tr), (cfg.batch_size,), device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, correct = ddp([nets[i] for i in ids], [archs[i] for i in ids], x_tr[idx], y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ghn.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            seen += len(ids) * world
            losses.append(float(loss.detach()))
            accs.append(float(correct.mean()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", acc=f"{accs[-1]:.3f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        t_train += time.perf_counter() - t0
        val = [accuracy(nets[int(i)], predict_params(ghn, nets[int(i)], archs[int(i)], bn_batches), x_va, y_va)
               for i in val_ids]
        metrics = {"accuracy": float(np.mean(val)), "train_accuracy": float(np.mean(accs))}
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), **metrics})
        if master:
            if not cfg.quiet:
                print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f} meta-batch acc {metrics['train_accuracy']:.3f} "
                      f"val acc of predicted networks {metrics['accuracy']:.3f}")
            ckpt = {"model": ghn.state_dict(), "optimizer": opt.state_dict(),
                    "model_config": {"name": "ghn", "ghn": asdict(gcfg)}, "train_config": asdict(cfg),
                    "step": step, "epoch": epoch + 1, "metrics": metrics, "history": history}
            torch.save(ckpt, os.path.join(cfg.out, "last.pt"))
            if metrics["accuracy"] > best:
                best, best_metrics = metrics["accuracy"], metrics
                torch.save(ckpt, os.path.join(cfg.out, "best.pt"))
        if cfg.max_steps and step >= cfg.max_steps:
            break
    summary = {"best_val": best_metrics, "train_archs_per_s": seen / max(t_train, 1e-9), "steps": step,
               "peak_mem_mb": peak_memory_mb(device)}
    return finish(cfg, summary, history, master, world, f"done: best val accuracy of predicted networks "
                  f"{best:.4f}; {summary['train_archs_per_s']:.1f} architectures/s")


if __name__ == "__main__":
    run_cli(main)  # user errors (missing files, bad labels) print one line, exit code 2
