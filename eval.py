"""Evaluate a trained metanetwork checkpoint, or score your own networks with it.

    python eval.py runs/run/best.pt                          # the split it was validated on -> test
    python eval.py runs/run/best.pt --data zoo.h5 --split test
    python eval.py runs/run/best.pt --predict path/to/checkpoints/ --model mynets.py:make_net
    python eval.py runs/ghn/best.pt --max-archs 20     # a GHN: predicted vs. random init, per split

Needs nothing but the checkpoint (it holds the model and training configs, the input
normalization and target scaling). Prints a metrics table, writes ``metrics.json`` and a plot
(predicted vs. true for regression, a confusion matrix for classification).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # our `datasets`, not Hugging Face's

import numpy as np  # noqa: E402
import torch  # noqa: E402

import graphs  # noqa: E402
from graphs.errors import run_cli  # noqa: E402
from metanets import load_checkpoint  # noqa: E402
from metanets.metrics import classification_metrics, regression_metrics  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="best.pt / last.pt written by train.py")
    p.add_argument("--data", help="zoo .h5 (default: the one it was trained on)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", help="folder for metrics.json and the plot (default: beside the checkpoint)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--predict", help="folder (or file) of .pt/.pth/.safetensors checkpoints to score")
    p.add_argument("--model", help="module:factory building the architecture of --predict checkpoints")
    p.add_argument("--input-shape", action="append", help="example input shape for tracing, e.g. 1,1,8,8")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g = p.add_argument_group("GHN checkpoints (train.py --task ghn)")
    g.add_argument("--archs", help="architectures .h5 (default: the one it was trained on)")
    g.add_argument("--dataset", help="digits | mnist1d | folder (default: the one it was trained on)")
    g.add_argument("--splits", default="test,wide,deep,dense,bnfree", help="architecture splits to evaluate")
    g.add_argument("--max-archs", type=int, default=20, help="architectures per split (the first ones)")
    g.add_argument("--finetune-epochs", type=int, default=5, help="fine-tuning epochs from predicted/random")
    g.add_argument("--trained-epochs", type=int, default=20, help="epochs of the 'trained from scratch' column")
    return p.parse_args(argv)


@torch.no_grad()
def run_split(model, data: str, split: str, target: str, batch_size: int, device: torch.device):
    """Predictions and targets of ``model`` on one split of a zoo."""
    from datasets import ZooDataset
    from datasets.loader import make_loader

    ds = ZooDataset(data, split, labels=[target])
    preds, trues = [], []
    for batch in make_loader(ds, batch_size):
        batch = batch.to(device)  # PyG moves the batch in place: every tensor of it is on `device` now
        preds.append(model(batch).float().cpu().numpy())
        trues.append(batch.y.float().cpu().numpy())
    return np.concatenate(preds), np.concatenate(trues)


@torch.no_grad()
def run_edit(model, ckpt: dict, data: str, split: str, batch_size: int, device: torch.device, out: str,
             n_write: int = 8) -> tuple[dict, tuple]:
    """Edit task: MSE between the edited INRs' images and the edited images.

    The first edited INRs are written to ``out/edited/*.safetensors`` (loadable state_dicts of the
    original architecture).
    """
    from datasets import ZooDataset
    from datasets.loader import make_loader
    from graphs.batch import batch_to_rows
    from metanets.inr import SirenRenderer, edit_image

    tcfg = ckpt["train_config"]
    layout = graphs.Layout.from_json(ckpt["model_config"]["layout_json"])
    renderer = SirenRenderer(layout, (tcfg["image_size"], tcfg["image_size"])).to(device)
    ds = ZooDataset(data, split, labels=[])
    sq, sq0, n, shown = 0.0, 0.0, 0, None
    os.makedirs(os.path.join(out, "edited"), exist_ok=True)
    for batch in make_loader(ds, batch_size):
        batch = batch.to(device)
        edited = batch_to_rows(model(batch), layout)
        before = renderer(batch_to_rows(batch, layout))
        target, after = edit_image(tcfg["edit"], before), renderer(edited)
        sq += float((after - target).square().mean((1, 2)).sum())
        sq0 += float((before - target).square().mean((1, 2)).sum())
        for i in range(min(batch.num_graphs, n_write - n)):
            sd = graphs.unflatten_state_dict(edited[i].cpu(), layout)
            graphs.save_checkpoint(sd, os.path.join(out, "edited", f"{int(batch.zoo_index[i])}.safetensors"))
        if shown is None:
            shown = (before[:6].cpu(), target[:6].cpu(), after[:6].cpu())
        n += batch.num_graphs
    return {"mse": sq / max(n, 1), "mse_identity": sq0 / max(n, 1)}, shown


def plot_edit(images: tuple, path: str, title: str) -> None:
    """Rows: INR image, target (edited image), image drawn by the edited INR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = images[0].shape[0]
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.2), dpi=120, squeeze=False)
    for r, (name, imgs) in enumerate(zip(("INR", "target", "edited INR"), images, strict=True)):
        for c in range(k):
            axes[r, c].imshow(imgs[c].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(task: str, pred: np.ndarray, true: np.ndarray, metrics: dict, path: str, title: str) -> None:
    """Predicted-vs-true scatter (predict) or confusion matrix (classify)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2), dpi=120)
    if task == "predict":
        ax.scatter(true[:, 0], pred[:, 0], s=12, alpha=0.7)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title(f"{title}\n" + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), fontsize=9)
    else:
        k = pred.shape[1]
        cm = np.zeros((k, k), int)
        for t, p in zip(true[:, 0].astype(int), pred.argmax(1), strict=True):
            cm[t, p] += 1
        ax.imshow(cm, cmap="Blues")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def predict_files(model, args: argparse.Namespace, device: torch.device) -> list[tuple[str, np.ndarray]]:
    """Score every checkpoint under ``args.predict`` with ``model``."""
    from torch_geometric.data import Batch

    from graphs.__main__ import build_from_factory

    if not args.model:
        raise ValueError("--predict needs --model module:factory (the architecture of those checkpoints)")
    layout = graphs.trace(*build_from_factory(args.model, args.input_shape))
    root = args.predict
    files = [root] if os.path.isfile(root) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith((".pt", ".pth", ".safetensors")))
    if not files:
        raise ValueError(f"no .pt/.pth/.safetensors files under {root}")
    out = []
    for path in files:
        g = graphs.to_graph(graphs.load_checkpoint(path), layout)
        out.append((path, model(Batch.from_data_list([g]).to(device)).float().cpu().numpy()[0]))
    return out


def read_checkpoint(path: str) -> dict:
    """The checkpoint dict written by train.py, or a ValueError that says what is wrong."""
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                         "pass a best.pt or last.pt written by train.py") from exc
    if not isinstance(ckpt, dict) or not {"model", "model_config", "train_config"} <= set(ckpt):
        raise ValueError(f"{path} is not a weightgraph metanetwork checkpoint (it lacks model/model_config/"
                         "train_config); pass a best.pt or last.pt written by train.py")
    return ckpt


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the metrics (or the predictions of ``--predict``)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ckpt = read_checkpoint(args.checkpoint)
    tcfg = ckpt["train_config"]
    if tcfg["task"] == "ghn":
        return evaluate_ghn(ckpt, args, device)
    model = load_checkpoint(args.checkpoint).to(device)
    if args.predict:
        preds = predict_files(model, args, device)
        for path, p in preds:
            shown = f"{float(p[0]):.4f}" if tcfg["task"] == "predict" else f"class {int(p.argmax())}"
            print(f"{path}\t{tcfg['target']} = {shown}")
        return {"predictions": {path: p.tolist() for path, p in preds}}
    data = args.data or tcfg["data"]
    out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    os.makedirs(out, exist_ok=True)
    if tcfg["task"] == "edit":
        metrics, images = run_edit(model, ckpt, data, args.split, args.batch_size, device, out)
        true = np.zeros(0)
    else:
        pred, true = run_split(model, data, args.split, tcfg["target"], args.batch_size, device)
        metrics = regression_metrics(pred, true) if tcfg["task"] == "predict" else classification_metrics(pred, true)
    print(f"{tcfg['model']} on {os.path.basename(data)} [{args.split}, task {tcfg['task']} {tcfg['target']}]")
    print("| metric | value |\n|---|---:|")
    for k, v in metrics.items():
        print(f"| {k} | {v:.4f} |")
    result = {"checkpoint": os.path.abspath(args.checkpoint), "data": os.path.abspath(data), "split": args.split,
              "model": tcfg["model"], "task": tcfg["task"], "target": tcfg["target"], **metrics}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    if not args.no_plot and tcfg["task"] == "edit":
        plot_edit(images, os.path.join(out, f"{args.split}_edit.png"),
                  f"{tcfg['model']}: {tcfg['edit']}, mse {metrics['mse']:.4f} (unedited {metrics['mse_identity']:.4f})")
    elif not args.no_plot:
        plot(tcfg["task"], pred, true, metrics, os.path.join(out, f"{args.split}_{tcfg['task']}.png"),
             f"{tcfg['model']}: {tcfg['target']}")
    return result


def evaluate_ghn(ckpt: dict, args: argparse.Namespace, device: torch.device) -> dict:
    """A GHN checkpoint: accuracy of predicted vs. randomly initialized networks, per architecture split.

    For every architecture of each split: the predicted parameters (BatchNorm statistics recomputed on 4
    training batches) scored with no training, then fine-tuned for ``--finetune-epochs`` (Adam, lr 1e-3,
    batch 64) and scored after every epoch; the same from PyTorch's default random initialization,
    whose run continues to ``--trained-epochs`` for the "trained" column. Writes ``ghn_metrics.json`` and
    ``ghn_finetune.png`` (fine-tuning curves).
    """
    from datasets.archs import ArchsReader
    from datasets.zoo.data import load_named_or_path
    from metanets.hyper import ArchGraph, full_state_dict
    from metanets.hyper.meta import finetune, predict_params

    tcfg = ckpt["train_config"]
    ghn = load_checkpoint(args.checkpoint).to(device)
    archs_path, dataset = args.archs or tcfg["archs"], args.dataset or tcfg["dataset"]
    data = load_named_or_path(dataset)
    train = (data.x_train.to(device), data.y_train.to(device))
    test = (data.x_test.to(device), data.y_test.to(device))
    bn_batches = [train[0][i:i + 64] for i in range(0, 256, 64)]
    out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    os.makedirs(out, exist_ok=True)
    E, T = args.finetune_epochs, args.trained_epochs
    table: dict = {}
    with ArchsReader(archs_path) as reader:
        for split in [s for s in args.splits.split(",") if s]:
            if split not in reader.split_names:
                raise ValueError(f"{archs_path} has no architecture split {split!r}; it has {reader.split_names}")
            curves_p, curves_r, trained, params = [], [], [], []
            for i in reader.split(split)[:args.max_archs]:
                torch.manual_seed(int(i))  # the random-init baseline: PyTorch's default initialization
                net = reader.build(int(i)).to(device)
                arch = ArchGraph.of(reader.layout(int(i)), ghn.config.hops)
                pred = full_state_dict(net, predict_params(ghn, net, arch, bn_batches))
                rand = {k: v.detach().clone() for k, v in net.state_dict().items()}
                curves_p.append(finetune(net, pred, train, test, E, seed=int(i)))
                curve = finetune(net, rand, train, test, max(E, T), seed=int(i))  # one run: the first E epochs
                curves_r.append(curve[:E + 1])  # are the random-init curve, epoch T the trained column
                trained.append(curve[T])
                params.append(reader.num_params(int(i)))
            cp, cr = np.array(curves_p), np.array(curves_r)
            table[split] = {"archs": len(cp), "params_median": float(np.median(params)),
                            "predicted": cp.mean(0).tolist(), "predicted_std": cp.std(0).tolist(),
                            "random": cr.mean(0).tolist(), "random_std": cr.std(0).tolist(),
                            "trained": float(np.mean(trained)), "trained_epochs": T}
    print(f"GHN {os.path.basename(args.checkpoint)} on {dataset} ({os.path.basename(archs_path)}): mean test "
          f"accuracy; 'ft k' = after k epochs of fine-tuning")
    print(f"| split | archs | predicted | ft 1 | ft {E} | random init | ft 1 | ft {E} | trained ({T} ep) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for split, r in table.items():
        p, q = r["predicted"], r["random"]
        cells = [p[0], p[min(1, E)], p[E], q[0], q[min(1, E)], q[E], r["trained"]]
        print(f"| {split} | {r['archs']} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    result = {"checkpoint": os.path.abspath(args.checkpoint), "archs": os.path.abspath(archs_path),
              "dataset": dataset, "task": "ghn", "finetune_epochs": E, "splits": table}
    with open(os.path.join(out, "ghn_metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    if not args.no_plot:
        plot_finetune(table, os.path.join(out, "ghn_finetune.png"))
    return result


def plot_finetune(table: dict, path: str) -> None:
    """Fine-tuning curves per split: from predicted parameters (solid) vs. from random init (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for k, (split, r) in enumerate(table.items()):
        color = f"C{k}"
        ax.plot(r["predicted"], color=color, marker="o", label=f"{split}: GHN")
        ax.plot(r["random"], color=color, ls="--", marker="x", label=f"{split}: random init")
    ax.set_xlabel("fine-tuning epochs")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    run_cli(main)
