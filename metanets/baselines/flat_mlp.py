r"""The flat-vector MLP baseline: an MLP on the concatenated (normalized) weights.

.. math:: y = \mathrm{MLP}(\hat\theta), \qquad \hat\theta = \mathrm{vec}(\hat W_1, \hat b_1, \ldots) \in \mathbb{R}^P

This model is deliberately **not** permutation invariant: permuting the hidden neurons of a
network (the same function) permutes the entries of :math:`\hat\theta` and changes the prediction.
It is the baseline that shows what respecting the symmetry buys (Eilertsen et al., 2020;
Navon et al., 2023 use the same comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from metanets.baselines.common import batch_to_rows, check_task, layout_of, parse_options
from metanets.config import ModelConfig
from metanets.normalize import Normalizer

__all__ = ["FlatMLP", "FlatMLPConfig"]


@dataclass
class FlatMLPConfig:
    """Options of :class:`FlatMLP` (``ModelConfig.baseline``).

    Attributes:
        hidden: Width of the hidden layers.
        layers: Number of hidden layers.
        dropout: Dropout after each hidden layer.
    """

    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0


class FlatMLP(nn.Module):
    r"""MLP on the flat normalized parameter vector; NOT invariant to neuron permutations (by design).

    The first layer has ``num_params x hidden`` weights, so this baseline suits small networks.

    Args:
        cfg: ``cfg.baseline`` holds :class:`FlatMLPConfig` options; ``cfg.layout_json`` the architecture.

    Shapes:
        input: a batch of ParamGraphs of the layout; output: ``[num_graphs, out_dim]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_task(cfg, ("predict", "classify"))
        self.cfg = parse_options(FlatMLPConfig, cfg)
        self.layout = layout_of(cfg)
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        d, h = self.layout.num_params, self.cfg.hidden
        layers: list[nn.Module] = []
        for i in range(self.cfg.layers):
            layers += [nn.Linear(d if i == 0 else h, h), nn.SiLU(), nn.Dropout(self.cfg.dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(h if self.cfg.layers else d, cfg.out_dim))

    def forward(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs, out_dim]`` from the flat normalized weights."""
        return self.mlp(batch_to_rows(self.normalizer(batch), self.layout))  # [B, P] -> [B, out_dim]
