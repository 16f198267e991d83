"""Train a metanetwork or a hypernetwork: one loop for every task.

    python train.py --data zoo.h5 --task predict --model gmn --target test_acc
    python train.py --task ghn --archs archs.h5 --dataset digits  # a graph hypernetwork (GHN)
    torchrun --nproc-per-node 4 train.py --data zoo.h5 ...     # the same script, DDP

Reads top to bottom: config -> data -> model -> optimizer -> loop (tqdm) with validation each
epoch -> best/last checkpoints that hold everything eval.py needs. What differs by task (data,
model, loss, metrics, its options) is the task's module in ``tasks/``. ``--device auto`` uses CUDA
with bf16 autocast when present. An existing run in ``--out`` is refused unless ``--resume`` or
``--overwrite``; ``--config RUN/config.yaml`` repeats a run. Python: ``train.train({"data": ...})``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # our `datasets`, not Hugging Face's

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from graphs.cli import run_cli  # noqa: E402
from tasks import TASKS, read_checkpoint, save_checkpoint  # noqa: E402
from tasks.config import TrainConfig, build_parser, from_dict, parse  # noqa: E402
from tasks.ema import WeightEMA  # noqa: E402
from tasks.rundir import RunLog, prepare_out, resume_point  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402

__all__ = ["main", "parse_args", "train"]


CONFIGS = {name: task.Config for name, task in TASKS.items()}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, object]:
    """Command line -> (the common config, the task's config); every field is a flag."""
    return parse(build_parser(TrainConfig, CONFIGS, __doc__.split("\n\n")[0]), argv, TrainConfig, CONFIGS)


def train(cfg: TrainConfig | dict, task_cfg=None) -> dict:
    """Train; returns the summary (best validation metrics, speed, memory).

    ``cfg`` is a :class:`TrainConfig` with the task's config ``task_cfg``, or one flat dict of options
    as on the command line (``{"data": "zoo.h5", "task": "predict", "epochs": 5}``).
    """
    if isinstance(cfg, dict):
        cfg, task_cfg = from_dict(TrainConfig, CONFIGS, cfg)
    config = {**asdict(cfg), **asdict(task_cfg)}
    run = Runtime.start(cfg.device, cfg.dist_backend, cfg.amp, cfg.threads)
    task = TASKS[cfg.task](cfg, task_cfg, run)
    torch.manual_seed(cfg.seed + run.rank)
    np.random.seed(cfg.seed)
    if run.master:
        prepare_out(cfg.out, cfg.resume, cfg.overwrite, config)

    # ------------------------------------------------------- data and model
    task.load_data()
    model = task.build_model()
    module = run.distribute(task.training_module(model), task.find_unused_parameters)

    # ------------------------------------------------------------ optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    total = cfg.epochs * task.steps_per_epoch()
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    ema = WeightEMA(model, cfg.ema)  # off (the model itself) unless --ema
    start, step, history, best, best_metrics = resume(cfg, config, model, opt, sched, ema)
    show = run.master and not cfg.quiet
    log = RunLog(cfg.out, enabled=run.master)
    for row in history:
        log.epoch(row)
    if show:
        print(task.describe(model) + (f"; resuming after epoch {start}" if start else ""))

    # ----------------------------------------------------------------- loop
    sign = 1.0 if task.higher_is_better else -1.0
    seen, t_train = 0, 0.0
    for epoch in range(start, cfg.epochs):
        module.train()
        t0 = time.perf_counter()
        losses, logs = [], {}
        bar = tqdm(task.batches(epoch), total=task.steps_per_epoch(), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=None if show else True, leave=False)
        for batch in bar:
            with run.autocast():
                loss, n, values = task.loss(module, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip_norm)
            opt.step()
            sched.step()
            ema.update(model)
            step, seen = step + 1, seen + n
            losses.append(float(loss.detach()))
            for k, v in values.items():
                logs.setdefault(k, []).append(v)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        t_train += time.perf_counter() - t0
        kept = ema.module  # what is validated, selected and saved: the average under --ema, else the model
        metrics = {**task.validate(kept), **{f"train_{k}": float(np.mean(v)) for k, v in logs.items()}}
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), **metrics})
        if show:
            print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f} " + " ".join(f"val_{k} {v:.4f}"
                                                                             for k, v in metrics.items()))
        # ----------------------------------------------------------- checkpoint
        if run.master:
            log.epoch(history[-1])
            improved = sign * metrics[task.select] > best
            best, best_metrics = (sign * metrics[task.select], metrics) if improved else (best, best_metrics)
            ckpt = {"task": task.name, "model": kept.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "model_config": task.model_config(), "train_config": config,
                    "step": step, "epoch": epoch + 1, "metrics": metrics, "history": history, "best": best,
                    "best_metrics": best_metrics, **ema.checkpoint_entries(), **task.checkpoint_extras()}
            save_checkpoint(ckpt, os.path.join(cfg.out, "last.pt"))
            if improved:
                save_checkpoint(ckpt, os.path.join(cfg.out, "best.pt"))
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return finish(cfg, config, task, run, log, history, best_metrics, step, seen, t_train)


def resume(cfg: TrainConfig, config: dict, model, opt, sched, ema: WeightEMA) -> tuple[int, int, list, float, dict]:
    """``(epochs done, steps done, history, best score, best metrics)``: zeros, or those of ``--resume``'s last.pt.

    Resuming restores the model, optimizer and schedule; the data order of the remaining epochs starts afresh.
    """
    if not cfg.resume:
        return 0, 0, [], -math.inf, {}
    last = read_checkpoint(os.path.join(cfg.out, "last.pt"))
    start, step, history, best = resume_point(last, config)
    ema.restore(last)  # the model's weights (and the average's, under --ema)
    opt.load_state_dict(last["optimizer"])
    sched.load_state_dict(last["scheduler"])
    return start, step, history, best, dict(last.get("best_metrics", {}))


def finish(cfg: TrainConfig, config: dict, task, run: Runtime, log: RunLog, history: list, best_metrics: dict,
           step: int, seen: int, t_train: float) -> dict:
    """Write ``train_summary.json`` and the curves (rank 0), print what was written, leave the process group."""
    if not np.isfinite(best_metrics.get(task.select, np.nan)) and run.master:
        raise ValueError(f"training produced no finite validation {task.select} (loss {history[-1]['loss']:.4g} "
                         f"in the last epoch); check the data (NaN weights or labels?) and try a lower --lr")
    summary = {"best_val": best_metrics, f"train_{task.unit}_per_s": seen * run.world / max(t_train, 1e-9),
               "steps": step, "peak_mem_mb": run.peak_memory_mb()}
    if run.master:
        path = os.path.join(cfg.out, "train_summary.json")
        with open(path, "w") as f:
            json.dump({"config": config, **summary, "history": history}, f, indent=2)
        written = [os.path.join(cfg.out, n) for n in ("best.pt", "last.pt", "config.yaml")] + log.close() + [path]
        if not cfg.quiet:
            print(f"done: best val {task.select} {best_metrics.get(task.select, float('nan')):.4f}; "
                  f"{summary[f'train_{task.unit}_per_s']:.1f} {task.unit}/s\nwrote " + ", ".join(written))
    run.close()
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line and train; returns the summary."""
    return train(*parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))  # user errors (missing files, bad labels) print one line, exit code 2
