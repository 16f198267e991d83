"""Probe features for the metanetwork tasks: which probes, drawn from what, and the module that runs them.

A graph metanetwork trained on a *runnable* zoo (one that stores its networks' programs, see
:mod:`datasets.hdf5`) gets, by default, every neuron's activations on ``DEFAULT_PROBES`` probe inputs
(``COORDINATE_PROBES`` for coordinate networks such as INRs) as node features
(:class:`metanets.probes.ProbeFeatures`). The probes start as:

- coordinates on a grid over ``[-1, 1]^d`` for coordinate networks (INRs: inputs of 1 to 3 numbers);
- inputs drawn (seeded) from the training data of the zoo's networks: the ``data`` label of the zoo
  (``digits``, ``mnist1d``) or ``--probe-data`` (a name or a folder), when their shape fits;
- standard normal noise otherwise (said on the console);

and are then learned with the metanetwork (``--probe-learned``, the default) or kept fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from datasets import ZooDataset
from datasets.hdf5 import ZooReader
from datasets.zoo.data import load_named_or_path
from graphs.probes import ProbeNet
from metanets.models import model_from_checkpoint
from metanets.probes import ProbeFeatures

__all__ = ["DEFAULT_PROBES", "model_with_probes", "num_probes", "probe_dim", "probe_inputs", "probe_module",
           "probe_nets"]

DEFAULT_PROBES = 16
COORDINATE_PROBES = 256  # INRs: a 16x16 grid (every pixel of a 16x16 digit); against 64 on digits16-siren, 30 epochs:
# validation accuracy 0.950 against 0.916 (benchmarks/results/inr_indep_p256_warp.md)


def _coordinate_input(shape) -> bool:
    """Whether a program input shape ``[batch, d]`` is that of a coordinate network (1 <= d <= 3)."""
    return len(shape) == 2 and 1 <= shape[1] <= 3


def num_probes(requested: int, ds: ZooDataset, graph_model: bool, supported: bool = True) -> tuple[int, str]:
    """The number of probes to use (``requested``; -1: automatic) and a note to print ("" for none).

    Raises:
        ValueError: Probes requested for a model or task that cannot take them.
        datasets.ZooError: Probes requested on a zoo that stores no programs (names the command that adds them).
    """
    if requested == -1:
        if not (graph_model and supported):
            return 0, ""
        if not ds.runnable:
            return 0, (f"probe features off: {ds.path} stores no programs for its networks (add them with "
                       f"`python -m datasets add-program {ds.path} --model FILE.py:make`)")
        with ZooReader(ds.path) as r:
            shapes = [p["input_shapes"][0] for p in r.programs if p["input_shapes"]]
        coordinates = bool(shapes) and all(_coordinate_input(s) for s in shapes)
        return (COORDINATE_PROBES if coordinates else DEFAULT_PROBES), ""
    if requested > 0:
        if not graph_model:
            raise ValueError("--probes needs a graph metanetwork (gmn, pna, transformer); baselines take weights only")
        if not supported:
            raise ValueError("probe features are implemented for predict and classify, not this task; use --probes 0")
        if not ds.runnable:
            ds.programs()  # raises, naming add-program (the programs themselves are loaded once, by probe_module)
    return max(requested, 0), ""


def probe_dim(ckpt: dict) -> int:
    """The number of probes a checkpoint's metanetwork was trained with (0: weights only)."""
    mcfg = ckpt.get("model_config")
    return int(mcfg.get("gmn", {}).get("probe_dim", 0)) if isinstance(mcfg, dict) else 0


def model_with_probes(ckpt: dict, nets: Callable[[], list[ProbeNet]]) -> torch.nn.Module:
    """The checkpoint's model; one trained with probe features runs ``nets()`` (its probes come from ``ckpt``)."""
    dim = probe_dim(ckpt)
    return model_from_checkpoint(ckpt, ProbeFeatures(nets(), dim) if dim else None)


def probe_nets(ds: ZooDataset) -> list[ProbeNet]:
    """The :class:`ProbeNet` of every program of ``ds``'s zoo, in the zoo's program order."""
    return [ProbeNet(program, layout) for layout, program in ds.programs()]


def _data_source(ds: ZooDataset, given: str) -> str:
    if given:
        return given
    with ZooReader(ds.path) as r:
        if "data" not in r.label_names or r.label_kind("data") != "str":
            return ""
        names = {str(v) for v in r.labels("data")[ds.indices] if v}
    return names.pop() if len(names) == 1 else ""


def probe_inputs(nets: list[ProbeNet], count: int, ds: ZooDataset, source: str = "", seed: int = 0
                 ) -> tuple[torch.Tensor, str]:
    """``[count, *sample_shape]`` initial probes and what they are (see the module docstring)."""
    shape = tuple(nets[0].sites.input_shapes[0][1:])
    gen = torch.Generator().manual_seed(seed)
    if _coordinate_input((0, *shape)) and not source:  # a coordinate network
        side = max(2, math.ceil(count ** (1 / shape[0])))
        axes = torch.meshgrid(*[torch.linspace(-1, 1, side)] * shape[0], indexing="ij")
        grid = torch.stack([a.flatten() for a in axes], -1)
        keep = torch.randperm(len(grid), generator=gen)[:count].sort().values
        return grid[keep], f"{count} points of a {side}^{shape[0]} coordinate grid over [-1, 1]"
    name = _data_source(ds, source)
    if name:
        x = load_named_or_path(name).x_train.float()
        if tuple(x.shape[1:]) == shape:
            idx = torch.randperm(len(x), generator=gen)[:count]
            return x[idx].clone(), f"{count} training inputs of {name}"
        if source:
            raise ValueError(f"--probe-data {source}: its inputs have shape {tuple(x.shape[1:])}, the zoo's networks "
                             f"take {shape}")
    return torch.randn((count, *shape), generator=gen), f"{count} standard normal inputs of shape {shape}"


def probe_module(ds: ZooDataset, count: int, learned: bool, source: str = "", seed: int = 0
                 ) -> tuple[ProbeFeatures, str]:
    """The :class:`ProbeFeatures` of ``ds``'s zoo with ``count`` probes, and a line describing them."""
    nets = probe_nets(ds)
    probes, what = probe_inputs(nets, count, ds, source, seed)
    return ProbeFeatures(nets, probes, learned=learned), f"probe features: {what}, {'learned' if learned else 'fixed'}"
