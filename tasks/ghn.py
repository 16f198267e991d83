"""``--task ghn``: a graph hypernetwork (GHN) that predicts all parameters of unseen architectures.

Training: every step draws ``--meta-batch`` training architectures and one batch of images; the GHN
predicts every parameter of each architecture, the predicted networks classify the batch
(``functional_call``, BatchNorm on batch statistics), and the mean cross-entropy trains the GHN.
After every epoch the GHN predicts the validation architectures, recomputes their BatchNorm
statistics on a few training batches, and scores them on held-out training images (10%; the test
images are eval's). ``best.pt`` has the highest validation accuracy of predicted networks.

Eval: per architecture split, the accuracy of predicted parameters with no training, then after
fine-tuning, against PyTorch's default random initialization (``ghn_metrics.json``,
``ghn_finetune.png``). With ``--save OUT --model FILE.py:make``: predict the parameters of your own
network and save them as a loadable state_dict.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import graphs
from datasets.archs import ArchsReader
from datasets.zoo.data import load_named_or_path
from graphs.cli import build_from_factory
from metanets.hyper import GHN, ArchGraph, GHNConfig, full_state_dict, recompute_bn_stats
from metanets.hyper.meta import GHNLoss, accuracy, finetune, predict_params
from tasks import plots
from tasks.base import EvalContext, Report, Task, hold_out
from tasks.config import opt

__all__ = ["GHNEvalConfig", "GHNTask", "GHNTrainConfig"]


@dataclass
class GHNTrainConfig:
    """Options of ``--task ghn``."""

    archs: str = opt("", "architectures .h5 (python -m datasets archs N OUT.h5)")
    dataset: str = opt("digits", "digits | mnist1d | a folder (MNIST idx, CIFAR-10 pickles, ROOT/<class>/*.png)")
    meta_batch: int = opt(8, "architectures per optimizer step")
    rank: int = opt(32, "CP rank of every decoded tensor")
    hops: int = opt(4, "virtual-edge range of the architecture graph")
    symmetry_breaking: str = opt("position", "how units of one group are told apart", ("position", "noise"))
    val_archs: int = opt(32, "validation architectures scored after every epoch")

    def validate(self, common: Any) -> None:
        """``--archs`` is required; it (and a ``--dataset`` folder) is made absolute, so eval.py finds it anywhere."""
        if not self.archs:
            raise ValueError("--task ghn needs --archs ARCHS.h5 (make one with: python -m datasets archs N ARCHS.h5)")
        if self.meta_batch < 1:
            raise ValueError(f"--meta-batch {self.meta_batch}: give at least 1")
        self.archs = os.path.abspath(self.archs)
        if self.dataset not in ("digits", "mnist1d"):  # a folder: eval.py finds it from any folder
            self.dataset = os.path.abspath(self.dataset)


@dataclass
class GHNEvalConfig:
    """Evaluation options of GHN checkpoints."""

    archs: str = opt("", "architectures .h5 (default: the one it was trained on)")
    dataset: str = opt("", "digits | mnist1d | folder (default: the one it was trained on)")
    splits: str = opt("test,wide,deep,dense,bnfree", "architecture splits to evaluate")
    max_archs: int = opt(20, "architectures per split (the first ones)")
    finetune_epochs: int = opt(5, "fine-tuning epochs from predicted / random parameters")
    trained_epochs: int = opt(20, "epochs of the 'trained from scratch' column")
    save: str = opt("", "predict the parameters of --model and save them here (.safetensors or .pt)")
    bn_data: str = opt("", "with --save: recompute BatchNorm statistics on this data (digits | mnist1d | folder)")
    bn_batches: int = opt(4, "with --save --bn-data: batches of 64 for the BatchNorm statistics")

    def validate(self, common: Any) -> None:
        """``--save`` needs ``--model``."""
        if self.save and not common.model:
            raise ValueError("--save needs --model module:factory (the network whose parameters to predict)")


class GHNTask(Task):
    """Meta-training and evaluating a graph hypernetwork."""

    name = "ghn"
    Config = GHNTrainConfig
    EvalConfig = GHNEvalConfig
    unit = "archs"
    select, higher_is_better = "accuracy", True
    clip_norm = 5.0
    find_unused_parameters = True

    # ---------------------------------------------------------------- train
    def load_data(self) -> None:
        """Images (90% train / 10% validation of the training split) and every used architecture, built."""
        tc, dev = self.tc, self.device
        data = load_named_or_path(tc.dataset)
        self.images = hold_out(data.x_train, data.y_train, dev)
        with ArchsReader(tc.archs) as reader:
            shape = tuple(int(s) for s in data.x_train.shape[1:])
            if tuple(reader.input_shape) != shape or reader.num_classes != data.num_classes:
                raise ValueError(f"{tc.archs} holds architectures for inputs {tuple(reader.input_shape)} and "
                                 f"{reader.num_classes} classes, but {tc.dataset} has inputs {shape} and "
                                 f"{data.num_classes} classes; sample architectures for this data with "
                                 "python -m datasets archs N OUT.h5 --dataset ...")
            self.train_ids = reader.split(self.cfg.train_split)
            self.val_ids = reader.split(self.cfg.val_split)[:tc.val_archs]
            ids = [int(i) for i in np.concatenate([self.train_ids, self.val_ids])]
            self.nets = {i: reader.build(i).to(dev) for i in ids}
            self.archs = {i: ArchGraph.of(reader.layout(i), tc.hops).to(dev) for i in ids}
        self.bn_batches = [self.images.x_train[i:i + 64] for i in range(0, min(len(self.images.x_train), 256), 64)]
        self.rng = np.random.default_rng(self.cfg.seed)

    def build_model(self) -> nn.Module:
        """A GHN of the configured size."""
        cfg, tc = self.cfg, self.tc
        self.gcfg = GHNConfig(hidden=cfg.hidden, layers=cfg.layers, rank=tc.rank, hops=tc.hops,
                              symmetry_breaking=tc.symmetry_breaking)
        return GHN(self.gcfg).to(self.device)

    def training_module(self, model: nn.Module) -> nn.Module:
        """The meta-batch loss: one forward covers every architecture of the step (what DDP wraps)."""
        return GHNLoss(model)

    def model_config(self) -> dict[str, Any]:
        """``{"name": "ghn", "ghn": GHNConfig fields}``."""
        return {"name": "ghn", "ghn": asdict(self.gcfg)}

    def steps_per_epoch(self) -> int:
        """Meta-batches of the training architectures (over all ranks)."""
        return max(1, len(self.train_ids) // (self.tc.meta_batch * self.run.world))

    def batches(self, epoch: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(architecture ids, image indices)`` per step; every rank takes its own slice of one order."""
        order = self.rng.permutation(self.train_ids)  # the same on every rank
        mb, run = self.tc.meta_batch, self.run
        for k in range(self.steps_per_epoch()):
            start = (k * run.world + run.rank) * mb
            ids = [int(i) for i in order[start:start + mb]]
            yield ids, torch.randint(0, len(self.images.x_train), (self.cfg.batch_size,), device=self.device)

    def loss(self, module: nn.Module, batch: tuple[list[int], torch.Tensor]) -> tuple[torch.Tensor, int, dict]:
        """Cross-entropy of the predicted networks on one image batch; their accuracy is logged."""
        ids, idx = batch
        loss, correct = module([self.nets[i] for i in ids], [self.archs[i] for i in ids],
                               self.images.x_train[idx], self.images.y_train[idx])
        return loss, len(ids), {"accuracy": float(correct.mean())}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean accuracy of the predicted validation networks on held-out training images."""
        im = self.images
        val = [accuracy(self.nets[int(i)], predict_params(model, self.nets[int(i)], self.archs[int(i)],
                                                          self.bn_batches), im.x_val, im.y_val)
               for i in self.val_ids]
        return {"accuracy": float(np.mean(val))}

    def describe(self, model: nn.Module) -> str:
        """Architectures, images, size, device."""
        return (f"ghn: {len(self.train_ids)} training / {len(self.val_ids)} validation architectures on "
                f"{self.tc.dataset} ({len(self.images.x_train)} / {len(self.images.x_val)} images); "
                f"{sum(p.numel() for p in model.parameters()):,} weights on {self.run.describe()}")

    # ----------------------------------------------------------------- eval
    @classmethod
    def eval_data(cls, ctx: EvalContext) -> Any:
        """The image data (train for fine-tuning and BatchNorm statistics, test for scoring)."""
        opts, tc = ctx.options, ctx.task_cfg
        if opts.save:
            return load_named_or_path(opts.bn_data) if opts.bn_data else None
        return load_named_or_path(opts.dataset or tc.dataset)

    @classmethod
    def evaluate(cls, model: nn.Module, data: Any, ctx: EvalContext) -> Report:
        """The per-split table of predicted vs. random-init accuracy, or ``--save``: one network's parameters."""
        if ctx.options.save:
            return cls._save_params(model, data, ctx)
        opts, dev = ctx.options, ctx.runtime.device
        archs_path, dataset = opts.archs or ctx.task_cfg.archs, opts.dataset or ctx.task_cfg.dataset
        train, test = (data.x_train.to(dev), data.y_train.to(dev)), (data.x_test.to(dev), data.y_test.to(dev))
        bn_batches = [train[0][i:i + 64] for i in range(0, 256, 64)]
        E, T = opts.finetune_epochs, opts.trained_epochs
        table: dict[str, dict] = {}
        with ArchsReader(archs_path) as reader:
            for split in [s for s in opts.splits.split(",") if s]:
                if split not in reader.split_names:
                    raise ValueError(f"{archs_path} has no architecture split {split!r}; it has {reader.split_names}")
                curves_p, curves_r, trained, params = [], [], [], []
                ids = reader.split(split)[:opts.max_archs]
                for i in tqdm(ids, desc=f"split {split}", unit="arch", leave=False, disable=None):
                    torch.manual_seed(int(i))  # the random-init baseline: PyTorch's default initialization
                    net = reader.build(int(i)).to(dev)
                    arch = ArchGraph.of(reader.layout(int(i)), model.config.hops)
                    pred = full_state_dict(net, predict_params(model, net, arch, bn_batches))
                    rand = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    curves_p.append(finetune(net, pred, train, test, E, seed=int(i)))
                    curve = finetune(net, rand, train, test, max(E, T), seed=int(i))  # one run: the first E
                    curves_r.append(curve[:E + 1])  # epochs are the random-init curve, epoch T the trained column
                    trained.append(curve[T])
                    params.append(reader.num_params(int(i)))
                cp, cr = np.array(curves_p), np.array(curves_r)
                table[split] = {"archs": len(cp), "params_median": float(np.median(params)),
                                "predicted": cp.mean(0).tolist(), "predicted_std": cp.std(0).tolist(),
                                "random": cr.mean(0).tolist(), "random_std": cr.std(0).tolist(),
                                "trained": float(np.mean(trained)), "trained_epochs": T}
        rows = []
        for split, r in table.items():
            p, q = r["predicted"], r["random"]
            rows.append([split, r["archs"], p[0], p[min(1, E)], p[E], q[0], q[min(1, E)], q[E], r["trained"]])
        return Report(
            title=f"GHN {os.path.basename(ctx.common.checkpoint)} on {dataset} ({os.path.basename(archs_path)}): "
                  "mean test accuracy; 'ft k' = after k epochs of fine-tuning",
            header=["split", "archs", "predicted", "ft 1", f"ft {E}", "random init", "ft 1", f"ft {E}",
                    f"trained ({T} ep)"],
            rows=rows, digits=3, json_name="ghn_metrics.json", plot_name="ghn_finetune.png",
            result={"archs": os.path.abspath(archs_path), "dataset": dataset, "task": "ghn", "finetune_epochs": E,
                    "splits": table},
            plot=lambda path: plots.finetune_curves(table, path))

    @classmethod
    def _save_params(cls, ghn: nn.Module, data: Any, ctx: EvalContext) -> Report:
        """Predict every parameter of ``--model`` in one forward pass; save a loadable state_dict."""
        opts, dev = ctx.options, ctx.runtime.device
        net, inputs = build_from_factory(ctx.common.model, ctx.common.input_shape)
        layout = graphs.trace(net, inputs)
        net = net.to(dev)
        arch = ArchGraph.of(layout, ghn.config.hops).to(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            params = ghn(arch)
        seconds = time.perf_counter() - t0
        if data is not None:
            x = data.x_train.to(dev)
            try:
                params = recompute_bn_stats(net, params, [x[i * 64:(i + 1) * 64] for i in range(opts.bn_batches)])
            except RuntimeError as exc:  # the images do not fit the network's input layer
                raise ValueError(f"--bn-data {opts.bn_data}: its inputs of shape {tuple(x.shape[1:])} do not run "
                                 f"{ctx.common.model} (traced with inputs {[tuple(t.shape) for t in inputs]}): "
                                 f"{str(exc).splitlines()[0]}; give data of the network's input shape") from exc
        sd = {k: v.detach().cpu().contiguous() for k, v in full_state_dict(net, params).items()}
        net.load_state_dict(sd)  # proves the file will load into this architecture
        graphs.save_checkpoint(sd, opts.save)
        n = sum(p.numel for p in layout.params if not p.is_buffer)
        note = "" if data is not None or not any(p.role == "running_mean" for p in layout.params) else \
            " (BatchNorm running statistics are 0/1: pass --bn-data to recompute them)"
        return Report(title=f"predicted {n:,} parameters of {type(net).__name__} in {seconds:.3f} s; "
                            f"wrote {opts.save}{note}",
                      header=["file", "parameters", "seconds"], rows=[[opts.save, n, seconds]],
                      result={"task": "ghn", "saved": os.path.abspath(opts.save), "parameters": n, "seconds": seconds,
                              "bn_data": opts.bn_data or None},
                      json_name="ghn_predicted.json")
