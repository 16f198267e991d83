"""How much of an INR zoo's weights is the image, and how much the random initialization.

For every parameter tensor of a SIREN zoo built by ``python -m datasets build`` (one-view or
multi-view recipes), re-draws each SIREN's initialization (it depends only on the recipe seed and
the init index, see :func:`datasets.zoo.inr.fit_sirens`) and prints the standard deviation of the
stored weights, of the initialization and of the fitted change. Then fits scikit-learn logistic
regressions on the training split and scores them on validation and test: on StatNN-style per-tensor
statistics, on the flat weight vector, and on the flat change from init (an oracle: no metanetwork
sees the initialization). Chance is about 0.1::

    python benchmarks/inr_signal.py /tmp/inrwork/digits16-siren-all.h5 --recipe digits16-siren
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from datasets.hdf5 import ZooReader
from datasets.zoo.inr import _init_one, siren_param_shapes
from datasets.zoo.recipes import get_recipe


def inits(recipe, index: np.ndarray) -> np.ndarray:
    """The flat initial weights of the SIRENs of init index ``index`` (``view * N + image``)."""
    cfg = recipe.siren
    shapes = siren_param_shapes(cfg)
    rows = []
    for k in index.tolist():
        start = _init_one(cfg, shapes, torch.Generator().manual_seed(recipe.seed * 1_000_003 + int(k)))
        rows.append(torch.cat([v.flatten() for v in start.values()]).numpy())
    return np.stack(rows)


def statistics(w: np.ndarray, slices: dict[str, tuple[int, int]]) -> np.ndarray:
    """Mean, std, quantiles (0, .25, .5, .75, 1) of every tensor: StatNN's features."""
    out = []
    for a, b in slices.values():
        x = w[:, a:b]
        out += [x.mean(1, keepdims=True), x.std(1, keepdims=True), np.quantile(x, [0, .25, .5, .75, 1], axis=1).T]
    return np.concatenate(out, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--recipe", default="digits16-siren", help="the recipe the zoo was built from (its inits)")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    recipe = get_recipe(args.recipe)
    with ZooReader(args.zoo) as r:
        layout = r.layout()
        w = np.asarray(r.params(layout.fingerprint)[...], dtype=np.float64)
        y = r.labels("class").astype(int)
        image = r.labels("image_index").astype(int)
        view = r.labels("view").astype(int) if "view" in r.label_names else np.zeros_like(image)
        splits = {s: r.split(s) for s in ("train", "val", "test")}
        psnr = r.labels("psnr")
    n_images = int(image.max()) + 1
    w0 = inits(recipe, view * n_images + image)
    print(f"{len(w)} SIRENs; PSNR min {psnr.min():.1f} / mean {psnr.mean():.1f} dB")
    slices = {p.name: (p.offset, p.offset + p.numel) for p in layout.params}
    for name, (a, b) in slices.items():
        fit, start = w[:, a:b], w0[:, a:b]
        print(f"{name:14s} std {fit.std():.4f}  init {start.std():.4f}  change {(fit - start).std():.4f}")
    for what, x, c in (("per-tensor statistics", statistics(w, slices), 1.0), ("flat weights", w, 0.01),
                       ("flat change from init (oracle)", w - w0, 0.01)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        model.fit(x[splits["train"]], y[splits["train"]])
        scores = {s: model.score(x[idx], y[idx]) for s, idx in splits.items()}
        print(f"logistic regression on {what}: " + ", ".join(f"{s} {v:.3f}" for s, v in scores.items()))


if __name__ == "__main__":
    main()
