"""``info``: what a zoo holds (architectures, label statistics, splits), with an optional histogram plot."""

from __future__ import annotations

import argparse
import os

import numpy as np

from datasets.errors import ZooError
from datasets.hdf5 import FORMAT, ZooReader
from datasets.stats import split_digest
from graphs.cli import check_output

__all__ = ["describe", "plot_labels", "register"]


def describe(path: str | os.PathLike) -> str:
    """A human-readable summary of the zoo at ``path``."""
    with ZooReader(path) as r:
        size = os.path.getsize(r.path)
        lines = [f"{r.path}: {FORMAT} v{r.file.attrs['format_version']}, {r.num_models} models, "
                 f"{len(r.fingerprints)} architecture(s), {size / 1e6:.1f} MB"]
        lines.append("architectures:")
        for fp in r.fingerprints:
            layout = r.layout(fp)
            lines.append(f"  {fp}  {layout.name or '?'}: {len(r.models_of(fp))} models, {layout.num_params} params "
                         f"in {len(layout.params)} tensors ({layout.float_dtype}), {layout.num_int} int buffer "
                         f"entries, permutable groups {layout.group_sizes()}")
        lines.append(f"labels ({len(r.label_names)}):")
        for name in r.label_names:
            lines.append(f"  {name:<16} {_column_summary(r.labels(name), r.label_kind(name))}")
        info = r.split_info()
        if not info:
            lines.append(f"splits: none (make them with `python -m datasets split {r.path}`)")
        else:
            unit = f"by {info['group_by']!r}" if info["group_by"] else "by model"
            covers = (f"covers all {r.num_models} models" if info["num_models"] == r.num_models else
                      f"covers only the first {info['num_models']} of {r.num_models} models; re-split to include the "
                      "rest")
            lines.append(f"splits (seed {info['seed']}, fractions {'/'.join(f'{x:g}' for x in info['fractions'])}, "
                         f"{unit}, {'automatic' if info['auto'] else 'explicit'}, {covers}):")
            lines.append("  " + "  ".join(f"{n} {len(r.split(n))}" for n in r.split_names))
        for fp in r.fingerprints:
            st = r.stats(fp)
            if st is None:
                lines.append(f"normalization statistics {fp}: none (`python -m datasets stats {r.path}`)")
                continue
            current = st["split"] in r.split_names and split_digest(r.split(st["split"])) == st["split_digest"]
            lines.append(f"normalization statistics {fp}: over split {st['split']!r} ({st['num_models']} models), "
                         f"{'current' if current else 'STALE: the split changed; recompute them'}")
    return "\n".join(lines)


def _column_summary(values: np.ndarray, kind: str) -> str:
    if kind == "str":
        present = [v for v in values if v != ""]
        example = f", e.g. {present[0]!r}" if present else ""
        return f"str    {len(set(present))} distinct, {len(values) - len(present)} missing{example}"
    finite = values[np.isfinite(values)] if kind == "float" else values
    if not len(finite):
        return f"{kind:<6} all missing"
    text = f"{kind:<6} min {finite.min():.4g}  mean {finite.mean():.4g}  max {finite.max():.4g}"
    if kind == "int":
        return text + f"  {len(np.unique(finite))} distinct"
    return text + f"  {len(values) - len(finite)} missing"


def plot_labels(path: str | os.PathLike, out_png: str | os.PathLike, max_models: int = 2000) -> str:
    """Histograms of every numeric label and of the models' parameter norms, saved as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ZooError("--plot needs matplotlib: pip install -c constraints.txt 'weightgraph[data]'") from exc
    with ZooReader(path) as r:
        panels = [(n, r.labels(n)) for n in r.label_names if r.label_kind(n) != "str"]
        pick = np.random.default_rng(0).permutation(r.num_models)[:max_models]
        norms = np.array([np.linalg.norm(r.read(int(i))[1].astype(np.float64)) for i in np.sort(pick)])
        panels.append((f"parameter L2 norm ({len(pick)} models)", norms))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, panels, strict=False):
        values = np.asarray(values, np.float64)
        ax.hist(values[np.isfinite(values)], bins=30)
        ax.set_title(name)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out_png = os.fspath(out_png)
    tmp = f"{out_png}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out_png)  # an interrupted save never leaves half a PNG where the old one was
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_png


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` command."""
    p = subparsers.add_parser("info", help="summarize a zoo", description="Summarize a zoo: architectures, "
                              "labels, splits and statistics; --plot saves label histograms.")
    p.add_argument("zoo", help="zoo .h5 file")
    p.add_argument("--plot", nargs="?", const="", metavar="PNG",
                   help="save histograms of the numeric labels (default file: ZOO with .png suffix)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = None
    if args.plot is not None:
        out = args.plot or os.path.splitext(args.zoo)[0] + ".png"
        check_output(out, args.overwrite, what="plot")
    print(describe(args.zoo))
    if out is not None:
        print(f"plot: {plot_labels(args.zoo, out)}")
    return 0
