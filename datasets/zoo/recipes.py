"""Zoo recipes: typed descriptions of a population, sampled reproducibly from one seed.

A :class:`ClassifierRecipe` lists the choices for every hyperparameter; :func:`sample_runs` draws one
:class:`RunConfig` per run from ``numpy.random.default_rng(recipe.seed)``, so a recipe and its seed
fix every run (and each run's own seed fixes its weights). A :class:`SirenRecipe` fits one SIREN per
image. :data:`RECIPES` names the ready-made ones that ``python -m datasets build`` accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from datasets.errors import ZooError
from datasets.zoo.inr import SirenConfig
from datasets.zoo.models import ModelSpec
from datasets.zoo.train import RunConfig

__all__ = ["ClassifierRecipe", "RECIPES", "SirenRecipe", "get_recipe", "sample_runs"]


@dataclass(frozen=True)
class ClassifierRecipe:
    """A population of classifiers trained on one dataset.

    Each run draws one value from every tuple below (uniformly), and its learning rate
    log-uniformly from ``lr_range``.

    Attributes:
        name: Recipe name (stored as the ``recipe`` label).
        data: Data source (see :data:`datasets.zoo.data.DATA_SOURCES`).
        n_runs: Number of training runs; each stores one model per checkpoint epoch reached.
        seed: Seed of the sampling; run ``i`` trains with seed ``seed * 100_000 + i``.
        families: Model families (``mlp``, ``cnn``, ``resnet``).
        widths: Hidden units / channels.
        depths: Hidden layers / conv layers / residual blocks.
        activations: Activation names.
        dropouts: Dropout rates.
        inits: Weight initialization schemes.
        init_stds: Standard deviations for ``normal``-type inits.
        optimizers: ``adam``, ``sgd`` or ``momentum``.
        lr_range: ``(low, high)`` of the log-uniform learning rate.
        weight_decays: L2 weight decay values.
        epochs: Total training epochs.
        checkpoint_epochs: Epochs to keep (0 = initialization); the final epoch is always kept.
        batch_size: Minibatch size.
        train_fractions: Fractions of the training set used.
        cnn_stride: Conv stride of the ``cnn`` family.
        cnn_padding: Conv padding of the ``cnn`` family.
    """

    name: str
    data: str
    n_runs: int = 50
    seed: int = 0
    families: tuple[str, ...] = ("cnn",)
    widths: tuple[int, ...] = (8, 16)
    depths: tuple[int, ...] = (3,)
    activations: tuple[str, ...] = ("relu", "tanh")
    dropouts: tuple[float, ...] = (0.0,)
    inits: tuple[str, ...] = ("default",)
    init_stds: tuple[float, ...] = (0.05,)
    optimizers: tuple[str, ...] = ("adam",)
    lr_range: tuple[float, float] = (1e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.0,)
    epochs: tuple[int, ...] = (5,)
    checkpoint_epochs: tuple[int, ...] = ()
    batch_size: int = 64
    train_fractions: tuple[float, ...] = (1.0,)
    cnn_stride: int = 2
    cnn_padding: int = 1


@dataclass(frozen=True)
class SirenRecipe:
    """One SIREN fitted to each image of a source, labelled by the image's class.

    Attributes:
        name: Recipe name.
        images: Image source (see :data:`datasets.zoo.images.IMAGE_SOURCES`).
        n_images: Use the first ``n_images`` (``None``: all).
        size: Resize target for sources that are resized (``skimage``, ``folder``).
        siren: Architecture and fitting settings.
        seed: Initialization seed.
        views: SIRENs fitted to every image, each from its own initialization (``view`` label 0..views-1);
            with more than one, the splits keep all views of an image together (``group_by="image_index"``).
    """

    name: str
    images: str
    n_images: int | None = None
    size: tuple[int, int] = (32, 32)
    siren: SirenConfig = field(default_factory=SirenConfig)
    seed: int = 0
    views: int = 1


def sample_runs(recipe: ClassifierRecipe, in_channels: int, in_size: tuple[int, ...],
                num_classes: int) -> list[RunConfig]:
    """Draw the recipe's runs for data of the given shape (deterministic in ``recipe.seed``)."""
    if recipe.n_runs < 1:
        raise ZooError(f"recipe {recipe.name!r}: n_runs must be >= 1, got {recipe.n_runs}")
    lo, hi = recipe.lr_range
    if not 0 < lo <= hi:
        raise ZooError(f"recipe {recipe.name!r}: lr_range must satisfy 0 < low <= high, got {recipe.lr_range}")
    rng = np.random.default_rng(recipe.seed)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    runs = []
    for i in range(recipe.n_runs):
        family = pick(recipe.families)
        if family == "resnet" and len(in_size) != 2:
            family = "cnn"
        spec = ModelSpec(family=family, in_channels=in_channels, in_size=tuple(in_size), num_classes=num_classes,
                         width=int(pick(recipe.widths)), depth=int(pick(recipe.depths)),
                         activation=pick(recipe.activations), dropout=float(pick(recipe.dropouts)),
                         stride=recipe.cnn_stride, padding=recipe.cnn_padding)
        epochs = int(pick(recipe.epochs))
        lr = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        keep = tuple(sorted({e for e in recipe.checkpoint_epochs if e <= epochs} | {epochs}))
        runs.append(RunConfig(run=i, seed=recipe.seed * 100_000 + i, spec=spec, init=pick(recipe.inits),
                              init_std=float(pick(recipe.init_stds)), optimizer=pick(recipe.optimizers), lr=lr,
                              weight_decay=float(pick(recipe.weight_decays)), epochs=epochs,
                              batch_size=recipe.batch_size, train_fraction=float(pick(recipe.train_fractions)),
                              checkpoint_epochs=keep))
    return runs


_SMALL_CNN_ZOO = dict(families=("cnn",), widths=(16,), depths=(3,), cnn_stride=2, cnn_padding=0,
                      activations=("relu", "tanh", "sigmoid", "selu"), dropouts=(0.0, 0.05, 0.1, 0.2),
                      inits=("kaiming_normal", "xavier_uniform", "orthogonal", "truncated_normal"),
                      init_stds=(0.01, 0.05, 0.1), optimizers=("adam", "sgd", "momentum"), lr_range=(5e-4, 5e-2),
                      weight_decays=(0.0, 1e-5, 1e-4, 1e-3), epochs=(4,), checkpoint_epochs=(0, 1, 2, 3, 4),
                      train_fractions=(0.1, 0.25, 0.5, 1.0), batch_size=128)
"""Hyperparameter space of the Small CNN Zoo (Unterthiner et al., 2020), fewer epochs."""

RECIPES: dict[str, ClassifierRecipe | SirenRecipe] = {
    # Demo: 56 small CNNs (~150 checkpoints at epochs 1, 3 and the last) whose test accuracies spread
    # evenly from chance to ~0.96 (learning rate, epochs, width, init and train fraction all vary).
    "digits-cnn-small": ClassifierRecipe(
        name="digits-cnn-small", data="digits", n_runs=56, families=("cnn",), widths=(4, 8, 16), depths=(2, 3),
        activations=("relu", "tanh", "gelu"), dropouts=(0.0, 0.1), inits=("default", "kaiming_normal"),
        optimizers=("adam",), lr_range=(1e-3, 5e-2), weight_decays=(0.0, 1e-4), epochs=(3, 6, 12),
        checkpoint_epochs=(1, 3), train_fractions=(0.25, 1.0), batch_size=64),
    # `make demo`: one architecture (3 conv layers of 8 channels), so every metanetwork, StatNN and
    # NFN included, applies; hyperparameters vary as in digits-cnn-small.
    "digits-cnn-demo": ClassifierRecipe(
        name="digits-cnn-demo", data="digits", n_runs=100, families=("cnn",), widths=(8,), depths=(3,),
        activations=("relu", "tanh", "gelu"), dropouts=(0.0, 0.1), inits=("default", "kaiming_normal"),
        optimizers=("adam",), lr_range=(1e-3, 5e-2), weight_decays=(0.0, 1e-4), epochs=(3, 6, 12),
        checkpoint_epochs=(1, 3), train_fractions=(0.25, 1.0), batch_size=64),
    "digits-cnn": ClassifierRecipe(name="digits-cnn", data="digits", n_runs=1000,
                                   **{**_SMALL_CNN_ZOO, "cnn_padding": 1, "epochs": (8,),
                                      "checkpoint_epochs": (0, 1, 2, 4, 8), "widths": (8, 16)}),
    "digits-mlp": ClassifierRecipe(
        name="digits-mlp", data="digits", n_runs=500, families=("mlp",), widths=(16, 32, 64), depths=(1, 2, 3),
        activations=("relu", "tanh", "gelu", "sigmoid"), dropouts=(0.0, 0.1, 0.3),
        inits=("default", "kaiming_normal", "xavier_uniform"), optimizers=("adam", "momentum"),
        lr_range=(1e-4, 1e-1), weight_decays=(0.0, 1e-4, 1e-3), epochs=(10,), checkpoint_epochs=(0, 1, 3, 10)),
    "digits-resnet": ClassifierRecipe(
        name="digits-resnet", data="digits", n_runs=300, families=("resnet",), widths=(8, 16), depths=(1, 2, 3),
        activations=("relu", "gelu"), dropouts=(0.0, 0.1), inits=("default", "kaiming_normal"),
        lr_range=(3e-4, 3e-2), weight_decays=(0.0, 1e-4), epochs=(6,), checkpoint_epochs=(1, 3, 6)),
    "mnist1d-mlp": ClassifierRecipe(
        name="mnist1d-mlp", data="mnist1d", n_runs=500, families=("mlp",), widths=(32, 64, 128), depths=(1, 2),
        activations=("relu", "tanh", "gelu"), dropouts=(0.0, 0.1), inits=("default", "kaiming_normal"),
        lr_range=(1e-4, 1e-2), weight_decays=(0.0, 1e-4), epochs=(20,), checkpoint_epochs=(0, 5, 10, 20)),
    "mnist1d-cnn": ClassifierRecipe(
        name="mnist1d-cnn", data="mnist1d", n_runs=500, widths=(16, 32), depths=(3, 4), cnn_padding=1,
        activations=("relu", "tanh", "gelu"), lr_range=(3e-4, 1e-2), epochs=(20,), checkpoint_epochs=(0, 5, 10, 20)),
    # The Small CNN Zoo architecture and search space on data you provide (--data-path).
    "mnist-cnn": ClassifierRecipe(name="mnist-cnn", data="mnist", n_runs=1000, **_SMALL_CNN_ZOO),
    "fashion_mnist-cnn": ClassifierRecipe(name="fashion_mnist-cnn", data="fashion_mnist", n_runs=1000,
                                          **_SMALL_CNN_ZOO),
    "cifar10-cnn": ClassifierRecipe(name="cifar10-cnn", data="cifar10-gray", n_runs=1000, **_SMALL_CNN_ZOO),
    # INR zoos: one SIREN per image (DWSNets architecture: 2 -> 32 -> 32 -> 1, w0 = 30). Measured PSNR on one
    # thread: digits 8x8 min 52.9 / mean 56.5 dB at ~6 ms a SIREN; lfw 25x25 min 41 / mean 52 dB; scikit-image
    # photos at 32x32 min 35 / mean 40 dB at ~0.4 s a SIREN.
    "digits-siren": SirenRecipe(name="digits-siren", images="digits", siren=SirenConfig(steps=100, lr=1e-3)),
    # The same, every SIREN from one shared initialization (functa-style), on all 1,797 digits: with
    # independent inits the weights are dominated by init noise and no metanetwork beats chance.
    "digits-siren-shared": SirenRecipe(name="digits-siren-shared", images="digits",
                                       siren=SirenConfig(steps=100, lr=1e-3, shared_init=True)),
    # The field's protocol (independent initializations) at a size closer to MNIST's: digits upsampled to 16x16.
    "digits16-siren": SirenRecipe(name="digits16-siren", images="digits16", siren=SirenConfig(steps=300, lr=1e-3)),
    # The same with 8 SIRENs per image, each from its own initialization (splits by image): 14,376 INRs, so
    # weight-only metanetworks see how one image looks under many initializations.
    "digits16-siren-x8": SirenRecipe(name="digits16-siren-x8", images="digits16",
                                     siren=SirenConfig(steps=300, lr=1e-3), views=8),
    # MNIST's size: at 28x28 the 1,185 parameters of a SIREN fit 784 pixels (4.6 per pixel at 16x16), so
    # fits move further from their random start.
    "digits28-siren": SirenRecipe(name="digits28-siren", images="digits28", siren=SirenConfig(steps=500, lr=1e-3)),
    "lfw-siren": SirenRecipe(name="lfw-siren", images="lfw", siren=SirenConfig(steps=500, lr=1e-3)),
    "skimage-siren": SirenRecipe(name="skimage-siren", images="skimage", size=(32, 32),
                                 siren=SirenConfig(steps=500, lr=1e-3)),
    "folder-siren": SirenRecipe(name="folder-siren", images="folder", size=(28, 28),
                                siren=SirenConfig(steps=500, lr=1e-3)),
}


def get_recipe(name: str, **overrides) -> ClassifierRecipe | SirenRecipe:
    """A named recipe from :data:`RECIPES`, with fields replaced by ``overrides`` (``None`` values ignored)."""
    if name not in RECIPES:
        raise ZooError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(recipe, **overrides)
    except TypeError as exc:
        raise ZooError(f"recipe {name!r} ({type(recipe).__name__}) cannot take {sorted(overrides)}: {exc}") from exc
