"""The catalogue's case type and builders (see ``catalogue.py`` for what a case records and how to count)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Case", "HFLogits", "case", "hf_case", "hf_factory", "inputs"]


@dataclass(frozen=True)
class Case:
    """One network of the oracle with its hand-derived symmetry structure.

    Args:
        name: Unique snake_case identifier.
        build: Deterministic (seeded) constructor; returns a float32 model in eval mode.
        inputs: Seeded example positional inputs (batch 2).
        group_sizes: Sorted sizes of the independent permutable groups.
        permutable_neurons: Graph nodes in spaces with a permutable factor (see module docstring).
        note: How the numbers were derived.
        kwargs: Seeded example keyword inputs, if the forward takes any.
        hf: Needs ``transformers``.
        rtol: Relative tolerance for the float64 soundness check; only looser than 1e-9 with a reason in note.
    """

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple]
    group_sizes: tuple[int, ...]
    permutable_neurons: int
    note: str
    kwargs: Callable[[], dict] | None = None
    hf: bool = False
    rtol: float = 1e-9


# --------------------------------------------------------------------------- helpers
def inputs(*specs: tuple[int, ...] | tuple[str, int, tuple[int, ...]], seed: int = 1
                   ) -> Callable[[], tuple]:
    """Inputs factory: a shape gives ``randn``; ``("ids", vocab, shape)`` gives token ids in ``[1, "
    "vocab)``."""

    def make() -> tuple:
        g = torch.Generator().manual_seed(seed)
        out: list[Tensor] = []
        for spec in specs:
            if spec and spec[0] == "ids":
                _, vocab, shape = spec
                out.append(torch.randint(1, vocab, shape, generator=g))
            else:
                out.append(torch.randn(*spec, generator=g))
        return tuple(out)

    return make


def _warm_norm_stats(model: nn.Module, inputs: tuple, steps: int = 3) -> None:
    """Run a few train-mode passes on shifted, rescaled inputs so running statistics are non-trivial."""
    model.train()
    with torch.no_grad():
        for i in range(steps):
            model(*(x * (1.0 + 0.5 * i) + 0.3 * i + 0.2 * torch.randn_like(x) if x.is_floating_point() else x
                    for x in inputs))


def _builder(factory: Callable[[], nn.Module], seed: int = 0,
             warm: Callable[[], tuple] | None = None) -> Callable[[], nn.Module]:
    """Seeded, side-effect-free constructor; ``warm`` (an inputs factory) trains norm running stats."""

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory()
            if warm is not None:
                _warm_norm_stats(model, warm())
        return model.float().eval()

    return build


def case(name: str, factory: Callable[[], nn.Module], inputs: Callable[[], tuple],
          group_sizes: tuple[int, ...], permutable_neurons: int, note: str, *, warm: bool = False,
          **extra: object) -> Case:
    return Case(name, _builder(factory, warm=inputs if warm else None), inputs, group_sizes,
                permutable_neurons, note, **extra)



class HFLogits(nn.Module):
    """Return only ``.logits`` of a Hugging Face model, so the output is one tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Tensor, **kwargs: Tensor) -> Tensor:
        return self.model(*args, **kwargs).logits


def hf_factory(model_cls: str, config_cls: str, **config: object) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        transformers = importlib.import_module("transformers")
        cfg = getattr(transformers, config_cls)(**config)
        return HFLogits(getattr(transformers, model_cls)(cfg))

    return factory


def hf_case(name: str, model_cls: str, config_cls: str, config: dict, inputs: Callable[[], tuple],
             group_sizes: tuple[int, ...], permutable_neurons: int, note: str, *, warm: bool = False,
             rtol: float = 1e-9) -> Case:
    factory = hf_factory(model_cls, config_cls, **config)
    build = _builder(factory, warm=inputs if warm else None)
    return Case(name, build, inputs, group_sizes, permutable_neurons, note, hf=True, rtol=rtol)
