"""``--task neumeta``: one implicit weight manifold that samples a whole network at any width of its family.

    python train.py --task neumeta --factory nets.py:make --checkpoint full.pt --dataset digits --out RUN
    python eval.py RUN/best.pt                                     # accuracy against width (table + plot)
    python eval.py RUN/best.pt --width 0.4 --save net040.safetensors

``--factory FILE.py:make`` builds the network at a width ratio (``make(1.0)`` is the full network,
``--checkpoint`` a state_dict of it). Training: the family is traced at ``--train-widths`` evenly spaced
ratios of ``--width-range`` (and at the ratios eval reports) and checked (``graphs.width``); the full
network's neurons are reordered for smoothness (``graphs.width.smooth``: same function, lower total
variation, reported); then every step samples ``--widths-per-step`` training widths, generates their
networks from the manifold (``metanets.hyper.neumeta``), and minimizes their cross-entropy on one image
batch plus ``--recon-weight`` x the reconstruction of the smoothed full network, with coordinate noise.
Validation: BatchNorm statistics recomputed on ``--bn-batches`` training batches, accuracy on held-out
training images (10%), averaged over the training widths (selects ``best.pt``).

Eval: test accuracy at every ratio of ``--widths`` (ratios whose network was never trained are marked),
``neumeta_metrics.json`` and ``neumeta_width.png``; or ``--width R`` (``--save OUT``): one sampled network.
A width outside the training range is allowed, with a warning.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import graphs
from datasets.zoo.data import load_named_or_path
from graphs.cli import load_factory
from graphs.width import build_member, smooth, trace_family
from metanets.hyper.neumeta import NeuMeta, NeuMetaConfig, NeuMetaLoss, element_coords, sample_state_dict
from tasks import plots
from tasks.base import EvalContext, Report, Task, hold_out
from tasks.config import opt

__all__ = ["NeuMetaEvalConfig", "NeuMetaTask", "NeuMetaTrainConfig", "parse_ratios", "test_accuracy"]

EVAL_WIDTHS = "0.25,0.375,0.5,0.625,0.75,0.875,1.0"


def parse_ratios(text: str, flag: str) -> list[float]:
    """``"0.25,1.0"`` -> ``[0.25, 1.0]``, each in ``(0, 1]``.

    Raises:
        ValueError: Not numbers, or a ratio outside ``(0, 1]``.
    """
    try:
        values = [float(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0 or max(values) > 1:
        raise ValueError(f"{flag} {text!r}: give width ratios in (0, 1] separated by commas, e.g. 0.25,1.0")
    return values


def _absolute_factory(spec: str) -> str:
    """``nets.py:make`` with the file's absolute path (eval.py runs from anywhere)."""
    if ":" not in spec:
        raise ValueError(f"--factory {spec!r}: give FILE.py:make (a function make(width: float) -> nn.Module)")
    mod, attr = spec.rsplit(":", 1)
    return f"{os.path.abspath(mod)}:{attr}" if mod.endswith(".py") else spec


@dataclass
class NeuMetaTrainConfig:
    """Options of ``--task neumeta``."""

    factory: str = opt("", "FILE.py:make, make(width: float) -> the network at that width ratio (1.0 = full)")
    checkpoint: str = opt("", "state_dict of make(1.0), the trained full network (.pt / .safetensors)")
    dataset: str = opt("digits", "digits | mnist1d | a folder (MNIST idx, CIFAR-10 pickles, ROOT/<class>/*.png)")
    width_range: str = opt("0.25,1.0", "lowest,highest width ratio trained")
    train_widths: int = opt(4, "evenly spaced width ratios in --width-range that the manifold is trained at")
    widths_per_step: int = opt(2, "networks sampled per optimizer step")
    recon_weight: float = opt(100.0, "weight of the reconstruction of the smoothed full network")
    distill_weight: float = opt(0.0, "weight of distillation from the full network: KL divergence from its "
                                     "predictions to each sampled network's (0: off)")
    coord_noise: float = opt(0.1, "std of the unit-coordinate noise, in unit spacings")
    smooth: bool = opt(True, "reorder the full network's neurons for smoothness before training")
    frequencies: int = opt(6, "Fourier frequencies per coordinate")
    cell_filter: bool = opt(True, "average unit-coordinate Fourier features over the unit's cell (1 / units)")
    bn_batches: int = opt(4, "batches whose statistics replace BatchNorm running statistics (validation, eval)")

    def validate(self, common: Any) -> None:
        """``--factory`` and ``--checkpoint`` are required (made absolute); ratios and counts are checked."""
        if not self.factory:
            raise ValueError("--task neumeta needs --factory FILE.py:make (make(width: float) -> nn.Module)")
        if not self.checkpoint:
            raise ValueError("--task neumeta needs --checkpoint FULL.pt (a state_dict of make(1.0))")
        self.factory = _absolute_factory(self.factory)
        self.checkpoint = os.path.abspath(self.checkpoint)
        lo_hi = parse_ratios(self.width_range, "--width-range")
        if len(lo_hi) != 2 or lo_hi[0] >= lo_hi[1]:
            raise ValueError(f"--width-range {self.width_range!r}: give lowest,highest with lowest < highest")
        if self.train_widths < 2:
            raise ValueError(f"--train-widths {self.train_widths}: give at least 2 (both ends of --width-range)")
        if not 1 <= self.widths_per_step <= self.train_widths:
            raise ValueError(f"--widths-per-step {self.widths_per_step}: give 1 to --train-widths "
                             f"({self.train_widths})")
        if self.bn_batches < 1:
            raise ValueError(f"--bn-batches {self.bn_batches}: give at least 1")
        if self.distill_weight < 0:
            raise ValueError(f"--distill-weight {self.distill_weight}: give 0 (off) or a positive weight")

    @property
    def ratios(self) -> list[float]:
        """The training width ratios."""
        lo, hi = parse_ratios(self.width_range, "--width-range")
        return [round(float(r), 6) for r in np.linspace(lo, hi, self.train_widths)]


@dataclass
class NeuMetaEvalConfig:
    """Evaluation options of weight-manifold checkpoints."""

    dataset: str = opt("", "digits | mnist1d | folder (default: the one it was trained on)")
    widths: str = opt(EVAL_WIDTHS, "width ratios of the accuracy table")
    width: float = opt(0.0, "sample one network at this width ratio (and with --save, write it)")
    save: str = opt("", "with --width: write the sampled state_dict here (.safetensors or .pt)")
    bn_batches: int = opt(4, "batches of 64 training images for the BatchNorm statistics")

    def validate(self, common: Any) -> None:
        """``--save`` needs ``--width``; ratios in ``(0, 1]``."""
        parse_ratios(self.widths, "--widths")
        if self.save and not self.width:
            raise ValueError("--save needs --width R (the width ratio of the network to sample and save)")
        if self.width and not 0 < self.width <= 1:
            raise ValueError(f"--width {self.width}: give a width ratio in (0, 1] (1.0 = the full network)")


def test_accuracy(net: nn.Module, state_dict: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  batch: int = 512) -> float:
    """Accuracy of ``net`` with ``state_dict`` loaded (eval mode) on ``(x, y)``."""
    net.load_state_dict(state_dict, strict=True)
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / max(len(x), 1)


def _sizes(layout: graphs.Layout, groups: list[int]) -> list[int]:
    return [layout.groups[g].size for g in groups]


class NeuMetaTask(Task):
    """Training and evaluating a weight manifold over the widths of one network family."""

    name = "neumeta"
    Config = NeuMetaTrainConfig
    EvalConfig = NeuMetaEvalConfig
    unit = "nets"
    select, higher_is_better = "accuracy", True
    clip_norm = 1.0

    # ---------------------------------------------------------------- train
    def load_data(self) -> None:
        """Images, the traced family, the (smoothed) full network, and every training member with its coordinates."""
        tc, dev = self.tc, self.device
        data = load_named_or_path(tc.dataset)
        im = hold_out(data.x_train, data.y_train, dev)
        self.x_train, self.y_train, self.x_val, self.y_val = im.x_train, im.y_train, im.x_val, im.y_val
        make, _ = load_factory(tc.factory)
        example = (data.x_train[:2],)
        full_net = build_member(make, 1.0, tc.factory)
        sd = self._full_state_dict(full_net, example[0], data.num_classes)
        self.family = trace_family(make, example, tc.ratios + parse_ratios(EVAL_WIDTHS, "--widths"), tc.factory)
        full = self.family.full
        self.smoothing: dict[str, Any] = {}
        if tc.smooth:
            sd, _, tv = smooth(sd, full)
            self.smoothing = {"groups": {str(g): {"units": full.groups[g].size, "before": b, "after": a}
                                         for g, (b, a) in tv.items()},
                              "before": sum(b for b, _ in tv.values()), "after": sum(a for _, a in tv.values())}
        self.full_sd = sd
        self.teacher = None
        if tc.distill_weight > 0:  # the full network (smoothing does not change its function)
            self.teacher = build_member(make, 1.0, tc.factory).to(dev)
            self.teacher.load_state_dict(sd, strict=True)
            self.teacher.eval().requires_grad_(False)
        self.nets = [build_member(make, r, tc.factory).to(dev) for r in tc.ratios]
        self.coords = [element_coords(self.family.layouts[r], full, r).to(dev) for r in tc.ratios]
        self.full_coords = element_coords(full, full, 1.0).to(dev)
        self.target = torch.cat([sd[n].detach().float().reshape(-1) for n in self.full_coords.names]).to(dev)
        self.bn_batches = [self.x_train[i * 64:(i + 1) * 64] for i in range(tc.bn_batches)]
        self.rng = np.random.default_rng(self.cfg.seed + self.run.rank)

    def _full_state_dict(self, net: nn.Module, x: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
        """``--checkpoint``, checked against ``make(1.0)`` and the data."""
        tc = self.tc
        sd = graphs.load_checkpoint(tc.checkpoint)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"--checkpoint {tc.checkpoint} does not fit make(1.0) of {tc.factory} "
                             f"({str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}); "
                             "give a state_dict of the full-width network") from exc
        try:
            with torch.no_grad():
                out = net.eval()(x)
        except RuntimeError as exc:
            raise ValueError(f"{tc.factory}(1.0) does not run on {tc.dataset} inputs of shape {tuple(x.shape[1:])}: "
                             f"{str(exc).splitlines()[0]}") from exc
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise ValueError(f"{tc.factory}(1.0) outputs shape {tuple(out.shape)} but {tc.dataset} has "
                             f"{num_classes} classes; its output must be [batch, {num_classes}] logits")
        return {k: v.float() if v.is_floating_point() else v for k, v in net.state_dict().items()}

    def build_model(self) -> nn.Module:
        """A weight manifold for the family, its output scale taken from the full network."""
        self.mcfg = NeuMetaConfig(self.family.full.to_json(), self.cfg.hidden, self.cfg.layers, self.tc.frequencies,
                                  cell_filter=self.tc.cell_filter)
        model = NeuMeta(self.mcfg)
        model.set_scale(self.full_sd)
        return model.to(self.device)

    def training_module(self, model: nn.Module) -> nn.Module:
        """Cross-entropy of sampled networks + reconstruction (what DDP wraps)."""
        return NeuMetaLoss(model)

    def model_config(self) -> dict[str, Any]:
        """``{"name": "neumeta", "neumeta": NeuMetaConfig fields}`` (the full layout as JSON)."""
        return {"name": "neumeta", "neumeta": asdict(self.mcfg)}

    def checkpoint_extras(self) -> dict[str, Any]:
        """The smoothing report and the group sizes of every training width (eval marks unseen widths)."""
        groups = self.family.scaling_groups
        return {"smoothing": self.smoothing, "train_ratios": self.tc.ratios,
                "train_sizes": [_sizes(self.family.layouts[r], groups) for r in self.tc.ratios]}

    def steps_per_epoch(self) -> int:
        """Image batches in the training images (over all ranks)."""
        return max(1, len(self.x_train) // (self.cfg.batch_size * self.run.world))

    def batches(self, epoch: int):
        """``(training width indices, image indices)`` per step."""
        for _ in range(self.steps_per_epoch()):
            ws = self.rng.choice(len(self.nets), self.tc.widths_per_step, replace=False)
            yield [int(w) for w in ws], torch.randint(0, len(self.x_train), (self.cfg.batch_size,), device=self.device)

    def loss(self, module: nn.Module, batch) -> tuple[torch.Tensor, int, dict]:
        """Cross-entropy at the sampled widths + reconstruction at width 1.0; both logged."""
        ws, idx = batch
        for w in ws:
            self.nets[w].train()
        x = self.x_train[idx]
        teacher = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(x)
        loss, ce, recon, acc = module([self.nets[w] for w in ws], [self.coords[w] for w in ws], x,
                                      self.y_train[idx], self.full_coords, self.target, self.tc.coord_noise,
                                      self.tc.recon_weight, teacher, self.tc.distill_weight)
        return loss, len(ws), {"ce": float(ce), "recon": float(recon), "accuracy": float(acc)}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy on held-out training images at every training width (BatchNorm statistics recomputed)."""
        model.eval()
        accs = {}
        x_bn = torch.cat(self.bn_batches)
        for r, net in zip(self.tc.ratios, self.nets, strict=True):
            sd = sample_state_dict(model, net, r, x_bn, self.tc.bn_batches)
            accs[f"accuracy_w{r:g}"] = test_accuracy(net, sd, self.x_val, self.y_val)
        model.train()
        return {"accuracy": float(np.mean(list(accs.values()))), **accs}

    def describe(self, model: nn.Module) -> str:
        """Family, smoothing, size, device."""
        sm = self.smoothing
        tv = f"; smoothing: total variation {sm['before']:.1f} -> {sm['after']:.1f}" if sm else "; no smoothing"
        return (f"neumeta: {os.path.basename(self.tc.factory)} at widths {self.tc.ratios} on {self.tc.dataset} "
                f"({len(self.x_train)} / {len(self.x_val)} images){tv}; "
                f"{sum(p.numel() for p in model.parameters()):,} weights on {self.run.describe()}")

    # ----------------------------------------------------------------- eval
    @classmethod
    def eval_data(cls, ctx: EvalContext) -> Any:
        """The image data (train for BatchNorm statistics, test for scoring)."""
        return load_named_or_path(ctx.options.dataset or ctx.task_cfg.dataset)

    @classmethod
    def evaluate(cls, model: nn.Module, data: Any, ctx: EvalContext) -> Report:
        """Accuracy against width, or ``--width``: one sampled network (saved with ``--save``)."""
        opts, tc, dev = ctx.options, ctx.task_cfg, ctx.runtime.device
        make, _ = load_factory(tc.factory)
        x_bn = data.x_train[:64 * opts.bn_batches].to(dev)
        x_test, y_test = data.x_test.to(dev), data.y_test.to(dev)
        lo, hi = parse_ratios(tc.width_range, "--width-range")
        groups = [g.id for g in model.layout.groups if not g.fixed]
        seen = [list(s) for s in ctx.ckpt.get("train_sizes", [])]
        if opts.width:
            return cls._one(model, make, opts.width, (lo, hi), x_bn, (x_test, y_test), ctx)
        rows, table = [], []
        for r in parse_ratios(opts.widths, "--widths"):
            net = build_member(make, r, tc.factory).to(dev)
            sd = sample_state_dict(model, net, r, x_bn, opts.bn_batches)
            layout = graphs.trace(net, (x_bn[:2],))
            sizes = _sizes(layout, groups)
            acc = test_accuracy(net, sd, x_test, y_test)
            n = sum(p.numel for p in layout.params if not p.is_buffer)
            trained = sizes in seen
            table.append({"width": r, "units": sizes, "parameters": n, "trained_width": trained, "accuracy": acc})
            rows.append([r, "/".join(map(str, sizes)), n, "yes" if trained else "no (unseen)", acc])
        sm = ctx.ckpt.get("smoothing") or {}
        return Report(
            title=f"weight manifold {os.path.basename(ctx.common.checkpoint)} of {os.path.basename(tc.factory)} on "
                  f"{opts.dataset or tc.dataset}: test accuracy of the sampled network (BatchNorm statistics "
                  f"recomputed), trained at widths {ctx.ckpt.get('train_ratios')}",
            header=["width", "units per group", "parameters", "trained at this width", "test accuracy"],
            rows=rows, digits=4, json_name="neumeta_metrics.json", plot_name="neumeta_width.png",
            result={"task": "neumeta", "factory": tc.factory, "dataset": opts.dataset or tc.dataset,
                    "width_range": [lo, hi], "train_ratios": ctx.ckpt.get("train_ratios"), "widths": table,
                    "smoothing": sm},
            plot=lambda path: plots.accuracy_vs_width(table, path, f"{os.path.basename(tc.factory)} "
                                                                   f"({opts.dataset or tc.dataset})"))

    @classmethod
    def _one(cls, model: nn.Module, make, r: float, lo_hi: tuple[float, float], x_bn: torch.Tensor,
             test: tuple[torch.Tensor, torch.Tensor], ctx: EvalContext) -> Report:
        """Sample the network at width ``r``, score it, and write it with ``--save``."""
        opts, tc = ctx.options, ctx.task_cfg
        if not lo_hi[0] <= r <= lo_hi[1]:
            print(f"warning: --width {r} is outside the trained range {lo_hi[0]}..{lo_hi[1]}; the network is "
                  "extrapolated and may be poor", file=sys.stderr)
        net = build_member(make, r, tc.factory).to(ctx.runtime.device)
        sd = sample_state_dict(model, net, r, x_bn, opts.bn_batches)
        acc = test_accuracy(net, sd, *test)
        files = []
        if opts.save:
            out = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
            build_member(make, r, tc.factory).load_state_dict(out, strict=True)  # proves the file loads
            graphs.save_checkpoint(out, opts.save)
            files.append(opts.save)
        n = sum(v.numel() for k, v in sd.items() if v.is_floating_point())
        return Report(title=f"network of {os.path.basename(tc.factory)} at width {r} sampled from the manifold "
                            f"(BatchNorm statistics recomputed on {opts.bn_batches} batches)",
                      header=["width", "parameters", "test accuracy", "saved"],
                      rows=[[r, n, acc, opts.save or "-"]],
                      result={"task": "neumeta", "width": r, "accuracy": acc, "parameters": n,
                              "saved": os.path.abspath(opts.save) if opts.save else None},
                      json_name="neumeta_sample.json", files=files)
