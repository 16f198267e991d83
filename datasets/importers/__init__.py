"""Importers: read the model zoos people already have into the zoo format, one module per format.

* :mod:`~datasets.importers.small_cnn_zoo`: Small CNN Zoo ``weights.npy`` + ``metrics.csv.gz`` + ``layout.csv``;
* :mod:`~datasets.importers.inr_folder`: DWSNets/NFN folders of SIREN ``.pth`` files with split JSONs;
* :mod:`~datasets.importers.checkpoint_dirs`: Ray Tune ``<run>/checkpoint_*/`` folders (Model Zoos, CNN Wild Park).

Each module has ``detect(path)`` (is this folder in my format?), an ``import_*`` function and
``register(subparsers)`` for its ``python -m datasets import-*`` command.
"""

from datasets.importers.checkpoint_dirs import import_checkpoint_dirs
from datasets.importers.inr_folder import import_inr_folder
from datasets.importers.small_cnn_zoo import import_small_cnn_zoo

__all__ = ["import_checkpoint_dirs", "import_inr_folder", "import_small_cnn_zoo"]
