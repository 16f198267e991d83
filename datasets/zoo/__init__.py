"""Zoo builders: train populations of small networks (or fit INRs) on offline data and store them.

Command line: ``python -m datasets build RECIPE OUT.h5`` (see :mod:`datasets.zoo.build`).
"""

from datasets.zoo.build import BuildResult, build_classifier_zoo, build_siren_zoo, build_zoo
from datasets.zoo.data import ArrayData, load_data
from datasets.zoo.images import ImageSet, load_images
from datasets.zoo.inr import SirenConfig, SirenFit, fit_sirens, make_coordinates, render_sirens
from datasets.zoo.models import MLP, ModelSpec, ResidualCNN, Siren, SmallCNN, build_model, init_weights
from datasets.zoo.recipes import RECIPES, ClassifierRecipe, SirenRecipe, get_recipe, sample_runs
from datasets.zoo.storage import stacked_rows
from datasets.zoo.train import Checkpoint, RunConfig, train_run

__all__ = [
    "ArrayData", "BuildResult", "Checkpoint", "ClassifierRecipe", "ImageSet", "MLP", "ModelSpec", "RECIPES",
    "ResidualCNN", "RunConfig", "Siren", "SirenConfig", "SirenFit", "SirenRecipe", "SmallCNN", "build_classifier_zoo",
    "build_model", "build_siren_zoo", "build_zoo", "fit_sirens", "get_recipe", "init_weights", "load_data",
    "load_images", "make_coordinates", "render_sirens", "sample_runs", "stacked_rows", "train_run",
]
