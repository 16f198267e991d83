"""What the metanetwork tasks (predict, classify, edit) share: a zoo, a model from ``metanets``, loaders.

Training reads the zoo's train and validation splits (optionally with random neuron permutations as
augmentation), builds the metanetwork from a :class:`metanets.ModelConfig` (graph models of a
runnable zoo get probe features by default, see :mod:`tasks.probing`), fits its input normalizer on
training graphs only, and feeds PyG batches. A subclass says how a batch becomes a
loss and how predictions become metrics and plots.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch
from tqdm import tqdm

import graphs
from datasets import ZooDataset
from datasets.loader import make_loader, set_epoch
from datasets.transforms import Canonicalize, Compose, InputWarp, RandomSymmetry
from graphs.cli import build_from_factory
from graphs.probes import ProbeNet
from metanets import GRAPH_MODELS, ModelConfig, build_model
from tasks.base import EvalContext, Task
from tasks.config import EvalConfig, opt
from tasks.probing import model_with_probes, num_probes, probe_module, probe_nets

__all__ = ["MetanetConfig", "MetanetEvalConfig", "MetanetTask", "ZooEval"]

MODELS = (*GRAPH_MODELS, "nfn", "statnn", "mlp", "deepsets")


@dataclass
class MetanetConfig:
    """Training options of the metanetwork tasks."""

    data: str = opt("", "zoo .h5 file (python -m datasets build / convert / import-*)")
    model: str = opt("gmn", "metanetwork: gmn | pna | transformer (graph) or a baseline: nfn | statnn | mlp | "
                     "deepsets", MODELS)
    target: str = opt("", "label column to learn (default: test_acc for predict, class for classify)")
    layer_ids: bool = opt(True, "embed parameter (layer) identity; off for zoos that mix architectures")
    aggr: str = opt("", "gmn layer aggregations, e.g. mean,max (default: GMNConfig's)")
    edge_depth: int = opt(0, "gmn edge-update depth: 1 (GatedGCN-style) or 2 (two-layer MLP); 0: GMNConfig's")
    readout_stats: bool = opt(False, "graph models: add StatNN's per-tensor statistics to the readout")
    readout: str = opt("", "graph models' pooling: group (per node type and per tensor/edge type) or graph (all nodes "
                       "and edges at once); default: GMNConfig's (graph)", ("", "group", "graph"))
    readout_norm: bool = opt(False, "graph models: standardize the pooled features over each batch's graphs (a "
                             "BatchNorm) before the head; needed by weight-only models on INR zoos")
    augment: bool = opt(False, "random neuron-permutation augmentation of training graphs")
    warp: float = opt(0.0, "coordinate networks (INRs): warp each training network's input by a random affine map "
                      "x -> (I + s G) x + s g (G, g standard normal), written exactly into its first layer, with this "
                      "s (e.g. 0.1; 0: off)")
    canonicalize: bool = opt(False, "align every model (all splits, --predict files) to a reference of its "
                             "architecture by weight matching before building its graph (the alternative to --augment "
                             "for position-bound models)")
    canonical_refine: int = opt(20, "--canonicalize: most align-and-average rounds that make the reference (stops "
                                "when no alignment changes; 0: the first training model)")
    probes: int = opt(-1, "probe features: each neuron's activations on this many probe inputs (graph models; "
                      "0: off; -1: 16, 256 for INRs, when the zoo stores its networks' programs, else off)")
    probe_learned: bool = opt(True, "train the probe inputs with the metanetwork (else keep them fixed)")
    probe_data: str = opt("", "draw the initial probes from this data (digits, mnist1d or a folder); default: the "
                          "zoo's data label, a coordinate grid for INRs")
    workers: int = opt(0, "DataLoader worker processes")

    default_target = ""

    def validate(self, common: Any) -> None:
        """Check the options and make ``data`` absolute (eval.py finds it from any folder)."""
        if not self.data:
            raise ValueError("--data ZOO.h5 is required")
        if self.edge_depth not in (0, 1, 2):
            raise ValueError(f"--edge-depth {self.edge_depth}: choose 1 (GatedGCN-style) or 2 (two-layer MLP)")
        if self.probes < -1:
            raise ValueError(f"--probes {self.probes}: give a number of probes, 0 (off) or -1 (automatic)")
        if self.probes > 0 and self.model not in GRAPH_MODELS:
            raise ValueError(f"--probes needs a graph model (gmn, pna, transformer), not {self.model}; use --probes 0")
        if self.warp < 0:
            raise ValueError(f"--warp {self.warp}: give 0 (off) or a positive size such as 0.1")
        if self.canonicalize and self.warp > 0:
            raise ValueError("--warp and --canonicalize: the canonical form is computed once per model, a warp is "
                             "drawn per step; choose one")
        if self.canonicalize and self.augment:
            raise ValueError("--augment draws random neuron permutations, which undoes --canonicalize; choose one")
        if self.canonical_refine < 0:
            raise ValueError(f"--canonical-refine {self.canonical_refine}: give 0 or more rounds")
        if self.readout_stats and self.model not in GRAPH_MODELS:
            raise ValueError(f"--readout-stats needs a graph model (gmn, pna, transformer), not {self.model}")
        self.data = os.path.abspath(self.data)
        self.target = self.target or self.default_target


@dataclass
class MetanetEvalConfig:
    """Evaluation options of the metanetwork tasks."""

    data: str = opt("", "zoo .h5 (default: the one it was trained on)")
    split: str = opt("test", "split to evaluate")
    predict: str = opt("", "score your own checkpoints: a folder (or file) of .pt/.pth/.safetensors; "
                       "--model names their architecture")

    def validate(self, common: Any) -> None:
        """``--predict`` needs ``--model``."""
        if self.predict and not common.model:
            raise ValueError("--predict needs --model module:factory (the architecture of those checkpoints)")


@dataclass
class ZooEval:
    """Evaluation data: a zoo split, or graphs of user checkpoints (``paths`` set)."""

    loader: Any
    data: str
    split: str
    paths: list[str] | None = None
    nets: Callable[[], list] | None = None  # the ProbeNets of batch.program (probe-feature models need them)


class MetanetTask(Task):
    """A metanetwork on a zoo; subclasses define the loss, the metrics and the report."""

    Config = MetanetConfig
    EvalConfig = MetanetEvalConfig
    probe_features = True  # whether the task's models can take probe features

    # ---------------------------------------------------------------- train
    def load_data(self) -> None:
        """The zoo's train/val splits as loaders; layouts, graph width and the output size."""
        tc, cfg, run = self.tc, self.cfg, self.run
        self.labels = [tc.target] if tc.target else []
        parts = ([RandomSymmetry()] if tc.augment else []) + ([InputWarp(tc.warp)] if tc.warp > 0 else [])
        transform = parts[0] if len(parts) == 1 else Compose(parts) if parts else None
        self.train_ds = self.finite(ZooDataset(tc.data, cfg.train_split, labels=self.labels, transform=transform))
        self.val_ds = self.finite(ZooDataset(tc.data, cfg.val_split, labels=self.labels))
        self.canon = None
        if tc.canonicalize:
            self.canon = Canonicalize.from_dataset(self.train_ds, refine=tc.canonical_refine)
            for ds, name in ((self.train_ds, "train"), (self.val_ds, "val")):
                self.canon.warm(ds, desc=f"canonicalize {name}")
                ds.transform = self.canon
        if tc.target:
            self.check_target(self.train_ds._columns[tc.target])
        self.layouts = list(self.train_ds.layouts.values())
        if tc.warp > 0:  # every architecture must read coordinates (the message names the fix)
            for layout in self.layouts:
                parts[-1].check(layout)
        self.single = len(self.layouts) == 1
        if tc.readout_stats and not self.single:
            raise ValueError("--readout-stats needs a zoo of one architecture (per-tensor statistics are per layout)")
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(self.train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, rank=run.rank,
                                        world=run.world, workers=tc.workers, pin_memory=pin)
        self.val_loader = make_loader(self.val_ds, cfg.batch_size, workers=tc.workers, pin_memory=pin)

    def out_dim(self) -> int:
        """Outputs per graph."""
        return 1

    def check_target(self, column) -> None:
        """Refuse a label column this task cannot learn (``ValueError``); any numeric column by default."""
        if isinstance(column, list):
            raise ValueError(f"label {self.tc.target!r} of {self.tc.data} holds strings; --task {self.name} needs a "
                             "numeric label (see python -m datasets info ZOO.h5)")

    def finite(self, ds: ZooDataset) -> ZooDataset:
        """``ds`` without the models whose label or weights are NaN/Inf, saying how many went."""
        bad_label, bad_weight = ds.nonfinite()
        bad = bad_label | bad_weight
        if not bad.any():
            return ds
        if bad.all():
            raise ValueError(f"every model of split {ds.split!r} of {self.tc.data} has NaN/Inf labels "
                             f"({int(bad_label.sum())}) or weights ({int(bad_weight.sum())}); nothing to train on")
        if self.run.master:
            print(f"skipping {int(bad.sum())} of {len(ds)} models of split {ds.split!r}: {int(bad_label.sum())} with "
                  f"NaN/Inf labels ({', '.join(self.labels)}), {int(bad_weight.sum())} with NaN/Inf weights")
        return ds.subset(~bad)

    def model_config(self) -> dict[str, Any]:
        """The :class:`metanets.ModelConfig` of this zoo and these options, as a dict."""
        return self.mcfg.to_dict()

    def build_model(self) -> nn.Module:
        """The metanetwork, its normalizer fitted on (at most 50 batches of) training graphs."""
        tc, cfg, lay = self.tc, self.cfg, self.layouts[0]
        mcfg = ModelConfig(name=tc.model, task=self.name, out_dim=self.out_dim(),
                           num_params=lay.num_params if self.single else 0,
                           num_norm_keys=len(lay.params) if self.single else len(graphs.EDGE_TYPES),
                           normalize_by="param" if self.single else "type",
                           layout_json=lay.to_json() if self.single else None)
        mcfg.gmn.hidden, mcfg.gmn.layers = cfg.hidden, cfg.layers
        mcfg.gmn.width = max(graphs.compile_layout(x).width for x in self.layouts)
        chunks = max(graphs.compile_layout(x).num_chunks for x in self.layouts)
        mcfg.gmn.max_chunks = min(chunks, 1024) if chunks > 1 else 0
        mcfg.gmn.max_layers = len(lay.params) if (self.single and tc.layer_ids) else 0
        mcfg.gmn.aggr = tc.aggr or mcfg.gmn.aggr
        mcfg.gmn.edge_depth = tc.edge_depth or mcfg.gmn.edge_depth
        mcfg.gmn.readout_stats = tc.readout_stats
        mcfg.gmn.readout = tc.readout or mcfg.gmn.readout
        mcfg.gmn.readout_norm = tc.readout_norm
        mcfg.baseline.setdefault("hidden", cfg.hidden)
        count, note = num_probes(tc.probes, self.train_ds, tc.model in GRAPH_MODELS, self.probe_features)
        probe = None
        if count:
            probe, note = probe_module(self.train_ds, count, tc.probe_learned, tc.probe_data, cfg.seed)
            mcfg.gmn.probe_dim = count
        if note and self.run.master:
            print(note)
        self.mcfg = mcfg
        model = build_model(mcfg, probe)
        stats_batches = (b for _, b in zip(range(50), make_loader(self.train_ds, 64), strict=False))
        model.normalizer.fit(stats_batches)  # training-split statistics only
        return model.to(self.device)

    def steps_per_epoch(self) -> int:
        """Batches of this rank's shard."""
        return len(self.train_loader)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's shuffled training batches, on the device."""
        set_epoch(self.train_loader, epoch)
        for batch in self.train_loader:
            yield batch.to(self.device, non_blocking=True)

    def describe(self, model: nn.Module) -> str:
        """Sizes, model, device, target."""
        return (f"train: {len(self.train_ds)} graphs, val: {len(self.val_ds)}; model {self.tc.model} "
                f"({sum(p.numel() for p in model.parameters()):,} weights) on {self.run.describe()}"
                + (f"; target {self.tc.target}" if self.tc.target else ""))

    def checkpoint_extras(self) -> dict[str, Any]:
        """The label columns the model predicts (and the canonical references of ``--canonicalize``)."""
        extras: dict[str, Any] = {"label_names": self.labels}
        if self.canon is not None:
            extras["canonical"] = self.canon.state()
        return extras

    @torch.no_grad()
    def predictions(self, model: nn.Module, loader) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs and labels over every batch of ``loader``."""
        model.eval()
        preds, trues = [], []
        for batch in loader:
            batch = batch.to(self.device, non_blocking=True)
            with self.run.autocast():
                out = model(batch)
            preds.append(out.float().cpu().numpy())
            trues.append(batch.y.float().cpu().numpy())
        return np.concatenate(preds), np.concatenate(trues)

    # ----------------------------------------------------------------- eval
    @classmethod
    def eval_data(cls, ctx: EvalContext) -> ZooEval:
        """A split of the zoo (``--data``, else the training zoo), or the graphs of ``--predict`` files."""
        if ctx.options.predict:
            return cls._user_graphs(ctx.options.predict, ctx.common, ctx.ckpt["model_config"], cls._canonical(ctx.ckpt))
        data = ctx.options.data or ctx.task_cfg.data
        ds = ZooDataset(data, ctx.options.split, labels=[ctx.task_cfg.target] if ctx.task_cfg.target else [],
                        transform=cls._canonical(ctx.ckpt))
        return ZooEval(make_loader(ds, ctx.common.batch_size), data, ctx.options.split, nets=lambda: probe_nets(ds))

    @classmethod
    def eval_model(cls, ctx: EvalContext, data: ZooEval) -> nn.Module:
        """The trained model; one with probe features runs the networks of ``data`` (its zoo's programs)."""
        return model_with_probes(ctx.ckpt, data.nets)

    @staticmethod
    def _canonical(ckpt: dict) -> Canonicalize | None:
        """The ``--canonicalize`` transform a checkpoint was trained with (None: none)."""
        return Canonicalize.from_state(ckpt["canonical"]) if ckpt.get("canonical") else None

    @staticmethod
    def _user_graphs(root: str, ecfg: EvalConfig, model_config: dict, canon: Canonicalize | None = None) -> ZooEval:
        layout, program = graphs.trace_program(*build_from_factory(ecfg.model, ecfg.input_shape))
        trained = model_config.get("layout_json")
        if trained and graphs.Layout.from_json(trained).fingerprint != layout.fingerprint:
            lay = graphs.Layout.from_json(trained)
            raise ValueError(f"--model {ecfg.model} builds architecture #{layout.fingerprint} ({layout.num_params:,} "
                             f"parameters), but this metanetwork was trained on #{lay.fingerprint} ({lay.num_params:,}"
                             " parameters) only; score networks of that architecture, or train on a zoo of yours")
        compiled = graphs.compile_layout(layout)
        width = compiled.width
        if width > model_config.get("gmn", {}).get("width", width):
            raise ValueError(f"--model {ecfg.model} has kernels of {width} values per edge, wider than the "
                             f"{model_config['gmn']['width']} this metanetwork was trained with")
        if compiled.num_chunks > 1 and not model_config.get("gmn", {}).get("max_chunks", 0):
            raise ValueError(f"--model {ecfg.model} has blocks split into up to {compiled.num_chunks} edges of "
                             f"{width} values, and this metanetwork was trained on graphs without split blocks")
        paths = [root] if os.path.isfile(root) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith((".pt", ".pth", ".safetensors")))
        if not paths:
            raise ValueError(f"no .pt/.pth/.safetensors files under {root}")
        data = []
        for p in paths:
            sd = graphs.load_checkpoint(p)
            vec = graphs.flatten_state_dict(sd, layout)
            data.append(graphs.vector_to_graph(canon(vec, layout) if canon else vec, layout,
                                               graphs.flatten_int_buffers(sd, layout)))
        for g in data:
            g.program = torch.zeros(1, dtype=torch.long)  # the one function of --model
        return ZooEval([Batch.from_data_list(data[i:i + ecfg.batch_size]) for i in range(0, len(data),
                                                                                        ecfg.batch_size)],
                       root, "files", paths, nets=lambda: [ProbeNet(program, layout)])

    @classmethod
    @torch.no_grad()
    def outputs(cls, model: nn.Module, data: ZooEval, ctx: EvalContext
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Model outputs, and for zoo splits the labels and the models' indices in the zoo."""
        preds, trues, index = [], [], []
        for batch in tqdm(data.loader, desc="evaluate", unit="batch", leave=False, disable=None):
            batch = batch.to(ctx.runtime.device)
            preds.append(model(batch).float().cpu().numpy())
            if data.paths is None:
                trues.append(batch.y.float().cpu().numpy())
                index.append(batch.zoo_index.cpu().numpy())
        if not trues:
            return np.concatenate(preds), None, None
        return np.concatenate(preds), np.concatenate(trues), np.concatenate(index)
