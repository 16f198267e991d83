"""Writers of tiny zoos in the exact published layouts of the formats the importers read.

Nothing here is a test; the tests call these with ``tmp_path``. Each writer documents the source of
the layout it reproduces.
"""

import csv
import gzip
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Small CNN Zoo (google-research/dnn_predict_accuracy): variables in the sorted-name order of the
# published layout.csv, TF shapes; 4,970 parameters in total.
SMALL_CNN_ZOO_VARS = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]
SMALL_CNN_ZOO_METRICS = [
    "config.activation", "config.b_init", "config.dataset", "config.dnn_architecture", "config.dropout",
    "config.epochs", "config.epochs_between_checkpoints", "config.init_std", "config.l2reg", "config.learning_rate",
    "config.num_layers", "config.num_units", "config.optimizer", "config.random_seed", "config.train_fraction",
    "config.w_init", "modeldir", "step", "test_accuracy", "test_loss", "train_accuracy", "train_loss",
]
STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def write_small_cnn_zoo(root: Path, n_runs: int = 3, steps=(0, 1, 86), gz: bool = True, index_column: bool = True,
                        seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """``weights.npy`` + ``metrics.csv[.gz]`` + ``layout.csv`` as published (pandas ``to_csv`` style,
    with its unnamed index column when ``index_column``); returns (weights, metric rows)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = n_runs * len(steps)
    width = sum(math.prod(s) for _, s in SMALL_CNN_ZOO_VARS)
    weights = rng.normal(0, 0.3, size=(n, width)).astype(np.float32)
    np.save(root / "weights.npy", weights)
    lead = [""] if index_column else []
    with open(root / "layout.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(lead + ["varname", "start_idx", "end_idx", "shape"])
        start = 0
        for i, (name, shape) in enumerate(SMALL_CNN_ZOO_VARS):
            end = start + math.prod(shape)
            w.writerow(([i] if index_column else []) + [name, start, end, str(shape)])
            start = end
    acts = ["relu", "tanh", "sigmoid", "selu"]
    rows = []
    for r in range(n_runs):
        for s in steps:
            rows.append({
                "config.activation": acts[r % 4], "config.b_init": "zeros", "config.dataset": "mnist",
                "config.dnn_architecture": "cnn", "config.dropout": 0.05 * r, "config.epochs": 86,
                "config.epochs_between_checkpoints": 20, "config.init_std": 0.05, "config.l2reg": 1e-4 * r,
                "config.learning_rate": 0.01 / (r + 1), "config.num_layers": 3, "config.num_units": 16,
                "config.optimizer": "adam", "config.random_seed": 42, "config.train_fraction": 1.0,
                "config.w_init": "he_normal", "modeldir": f"/tmp/dnn_science_workdir/run_{r:05d}", "step": s,
                "test_accuracy": 0.1 + 0.8 * s / 86 - 0.01 * r, "test_loss": 2.3 - 2 * s / 86,
                "train_accuracy": 0.1 + 0.85 * s / 86, "train_loss": 2.3 - 2.1 * s / 86})
    opener = (lambda p: gzip.open(p, "wt", newline="")) if gz else (lambda p: open(p, "w", newline=""))
    with opener(root / ("metrics.csv.gz" if gz else "metrics.csv")) as fh:
        w = csv.writer(fh)
        w.writerow(lead + SMALL_CNN_ZOO_METRICS)
        for i, row in enumerate(rows):
            w.writerow(([i] if index_column else []) + [row[c] for c in SMALL_CNN_ZOO_METRICS])
    return weights, rows


def tf_variables(row: np.ndarray) -> dict[str, np.ndarray]:
    """Slice one weights.npy row into its TF-shaped variables (the published layout)."""
    out, start = {}, 0
    for name, shape in SMALL_CNN_ZOO_VARS:
        end = start + math.prod(shape)
        out[name] = row[start:end].reshape(shape).astype(np.float64)
        start = end
    return out


_NP_ACT = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
           "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))}


def tf_cnn_forward(row: np.ndarray, x_nhwc: np.ndarray, activation: str) -> np.ndarray:
    """NumPy re-implementation of ``build_cnn`` in TF conventions: NHWC input, Conv2D kernels
    ``[kh, kw, in, out]`` with stride 2 and VALID padding, global average pooling, Dense ``[in, out]``."""
    v = tf_variables(row)
    h = x_nhwc.astype(np.float64)
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = v[f"sequential/{layer}/kernel:0"], v[f"sequential/{layer}/bias:0"]
        kh, kw, _, cout = k.shape
        ho, wo = (h.shape[1] - kh) // 2 + 1, (h.shape[2] - kw) // 2 + 1
        out = np.zeros((h.shape[0], ho, wo, cout))
        for i in range(kh):
            for j in range(kw):
                out += h[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2, :] @ k[i, j]
        h = _NP_ACT[activation](out + b)
    h = h.mean(axis=(1, 2))
    return h @ v["sequential/dense/kernel:0"] + v["sequential/dense/bias:0"]


# ---------------------------------------------------------------- DWSNets / NFN INR folders


class DWSNetsSine(nn.Module):
    """The DWSNets ``Siren`` layer: parameters ``weight``/``bias`` directly on the module."""

    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) / i)
        self.bias = nn.Parameter(torch.randn(o) * 0.1)

    def forward(self, x):
        return torch.sin(30.0 * nn.functional.linear(x, self.weight, self.bias))


class DWSNetsINR(nn.Module):
    """DWSNets ``INR(in_features=2, n_layers=3, hidden_features=32, out_features=1)``: keys ``seq.{i}.*``."""

    def __init__(self, hidden=32, n_layers=3, out_features=1):
        super().__init__()
        layers = [DWSNetsSine(2, hidden)] + [DWSNetsSine(hidden, hidden) for _ in range(n_layers - 2)]
        self.seq = nn.Sequential(*layers, nn.Linear(hidden, out_features))

    def forward(self, x):
        return self.seq(x) + 0.5


def write_dwsnets_mnist_inrs(root: Path, per_class: int = 2, classes=(0, 3, 7), hidden: int = 32,
                             seed: int = 0) -> dict:
    """DWSNets' MNIST INR folder and split file: ``mnist-inrs/mnist_png_{training,testing}_{label}_{idx}/
    checkpoints/model_final.pth`` plus ``mnist_splits.json`` = ``{split: {"path": [...], "label": [...]}}``
    with paths as DWSNets writes them (``dataset/mnist-inrs/...``, relative to its repository root) and
    labels as strings. Returns ``{relative path: (state_dict, label, split)}``."""
    torch.manual_seed(seed)
    data_dir = root / "mnist-inrs"
    written, split = {}, {"train": {"path": [], "label": []}, "val": {"path": [], "label": []},
                          "test": {"path": [], "label": []}}
    idx = 0
    for part in ("training", "testing"):
        for label in classes:
            for _ in range(per_class):
                rel = f"mnist_png_{part}_{label}_{idx}/checkpoints/model_final.pth"
                sd = DWSNetsINR(hidden).state_dict()
                (data_dir / rel).parent.mkdir(parents=True)
                torch.save(sd, data_dir / rel)
                name = "test" if part == "testing" else ("val" if idx % 3 == 0 else "train")
                split[name]["path"].append(f"dataset/mnist-inrs/{rel}")
                split[name]["label"].append(str(label))
                written[rel] = (sd, label, name)
                idx += 1
    (data_dir / "mnist_splits.json").write_text(json.dumps(split))
    return written


def write_neural_graphs_fmnist_inrs(root: Path, n: int = 6, seed: int = 0) -> dict:
    """neural-graphs' Fashion-MNIST INRs: ``fmnist_splits.json`` = ``{split: [path, ...]}`` and the label
    stored inside each checkpoint under ``"label"``. Returns ``{relative path: (state_dict, label, split)}``."""
    torch.manual_seed(seed)
    data_dir = root / "fmnist_inrs"
    split, written = {"train": [], "val": [], "test": []}, {}
    for i in range(n):
        name = ("train", "val", "test")[i % 3]
        rel = f"{name}/{i}.pth"
        sd = DWSNetsINR().state_dict()
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save({**sd, "label": i % 10}, data_dir / rel)
        split[name].append(f"dataset/fmnist_inrs/{rel}")
        written[rel] = (sd, i % 10, name)
    (data_dir / "fmnist_splits.json").write_text(json.dumps(split))
    return written


# ---------------------------------------------------------------- Ray Tune checkpoint folders


class ModelZooCNN(nn.Module):
    """Model Zoos' ``CNN`` (def_net.py) for 28x28 inputs: ``module_list`` of conv/pool/act/linear layers."""

    def __init__(self, channels_in: int = 1, nlin: str = "tanh") -> None:
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "sigmoid": nn.Sigmoid}[nlin]
        self.module_list = nn.ModuleList([
            nn.Conv2d(channels_in, 8, 5), nn.MaxPool2d(2, 2), act(),
            nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), act(),
            nn.Conv2d(6, 4, 2), act(), nn.Flatten(),
            nn.Linear(3 * 3 * 4, 20), act(), nn.Linear(20, 10)])

    def forward(self, x):
        for layer in self.module_list:
            x = layer(x)
        return x


def model_zoo_factory(config: dict) -> nn.Module:
    """Factory in the importer's convention: the run's ``params.json`` -> its network."""
    return ModelZooCNN(config["model::channels_in"], config["model::nlin"])


def write_model_zoos_runs(root: Path, n_runs: int = 2, epochs: int = 2, seed: int = 0) -> dict:
    """Model Zoos (Schürholt et al., 2022) raw zoo: one Ray Tune trial folder per run with ``params.json``,
    ``result.json`` (one JSON line per training iteration) and ``checkpoint_{epoch:06d}/checkpoints`` (a
    torch state_dict; the optimizer beside it). Returns ``{relative checkpoint path: (state_dict, epoch, run)}``."""
    torch.manual_seed(seed)
    written = {}
    for r in range(n_runs):
        nlin = ("tanh", "relu")[r % 2]
        config = {"model::type": "CNN", "model::channels_in": 1, "model::nlin": nlin, "model::dropout": 0.0,
                  "model::init_type": "kaiming_uniform", "optim::optimizer": "adam", "optim::lr": 3e-4,
                  "optim::wd": 0.0, "seed": 1000 + r, "training::batchsize": 500, "training::epochs_train": epochs,
                  "cuda": False}
        run_dir = root / f"NN_tune_trainable_{r:05d}_{r}_seed={1000 + r}_2022-06-01_12-00-0{r}"
        run_dir.mkdir(parents=True)
        (run_dir / "params.json").write_text(json.dumps(config, indent=2))
        lines = []
        for e in range(epochs + 1):  # checkpoint_000000 is saved in setup(), before any report
            ckpt_dir = run_dir / f"checkpoint_{e:06d}"
            ckpt_dir.mkdir()
            sd = ModelZooCNN(1, nlin).state_dict()
            torch.save(sd, ckpt_dir / "checkpoints")
            torch.save({"state": {}, "param_groups": []}, ckpt_dir / "optimizer")
            written[str(ckpt_dir.relative_to(root) / "checkpoints")] = (sd, e, r)
            if e:  # report e: the first one only evaluates (train metrics -999), later ones train an epoch first
                lines.append({"train_loss": 2.3 - 0.1 * e if e > 1 else -999, "train_acc": 0.2 * e if e > 1 else -999,
                              "test_loss": 2.3 - 0.1 * e, "test_acc": 0.1 + 0.2 * e - 0.01 * r,
                              "training_iteration": e, "trial_id": f"{r:05d}", "config": config})
        (run_dir / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (run_dir / "progress.csv").write_text("test_acc,training_iteration\n")
    return written


class _FakeDictConfig:
    """Stands in for omegaconf.DictConfig when writing a CNN Wild Park style checkpoint."""

    def __init__(self, content):
        self._content = content
        self._metadata = {"flags": {}}


def write_cnn_wild_park_runs(root: Path, n_runs: int = 2, iterations=(1, 2), seed: int = 0) -> dict:
    """CNN Wild Park (neural-graphs ``cnn_trainer.py``): ``<run>/checkpoint_{it:06d}/checkpoint.pt`` holding
    ``{"model", "optimizer", "config" (an OmegaConf object), "iteration", "last_result", ...}`` beside the
    trial's ``params.json``/``result.json``. Returns ``{relative path: (state_dict, iteration, run)}``."""
    torch.manual_seed(seed)
    module = types.ModuleType("omegaconf.dictconfig")
    _FakeDictConfig.__module__, _FakeDictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    module.DictConfig = _FakeDictConfig
    saved = {k: sys.modules.get(k) for k in ("omegaconf", "omegaconf.dictconfig")}
    sys.modules["omegaconf"] = types.ModuleType("omegaconf")
    sys.modules["omegaconf.dictconfig"] = module
    written = {}
    try:
        for r in range(n_runs):
            run_dir = root / "cifar10_zooV2" / f"NN_tune_trainable_{r:05d}"
            run_dir.mkdir(parents=True)
            config = {"model": {"channels": [1, 4, 6], "n_classes": 10}, "batch_size": 128, "seed": r}
            (run_dir / "params.json").write_text(json.dumps(config))
            lines = []
            for it in iterations:
                model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))
                result = {"test/acc": 0.2 * it + 0.01 * r, "test/loss": 2.0 / it, "training_iteration": it}
                ckpt = run_dir / f"checkpoint_{it:06d}" / "checkpoint.pt"
                ckpt.parent.mkdir()
                torch.save({"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []},
                            "config": _FakeDictConfig(config["model"]), "iteration": it, "timesteps_total": None,
                            "time_total": 1.5 * it, "episodes_total": None, "last_result": result,
                            "ray_version": "2.3.0"}, ckpt)
                written[str(ckpt.relative_to(root))] = (model.state_dict(), it, r)
                lines.append(result)
            (run_dir / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return written


def wild_park_factory() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

