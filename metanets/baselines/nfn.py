r"""NFN: neuron-permutation equivariant neural functionals (Zhou et al., 2023), written from the paper's math.

The weight space of an MLP/CNN chain (:class:`~metanets.baselines.nfn_spec.ChainSpec`) is carried
as features ``W_i [B, c * k_i, n_i, n_{i-1}]`` and ``b_i [B, c, n_i]`` (``c`` channels times the
layer's ``k_i`` filter slots). The NP group permutes the neurons of every layer boundary
independently, :math:`W_i \mapsto P_i W_i P_{i-1}^\top`, :math:`b_i \mapsto P_i b_i`; the network's
true symmetry (hidden neurons only) is a subgroup. Learned input/output position embeddings
(NFN's ``io_embed``) break the extra symmetry of the fixed input and output neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.batch import gather_features
from metanets.baselines.common import (
    batch_to_rows,
    check_task,
    flat_norm_keys,
    flat_scale,
    layout_of,
    parse_options,
)
from metanets.baselines.nfn_spec import ChainSpec
from metanets.config import ModelConfig
from metanets.conv import mlp
from metanets.normalize import Normalizer

__all__ = ["NFN", "NFNConfig", "NPLinear", "np_pool"]

Weights = list[torch.Tensor]  # W_i [B, C_i, n_i, n_{i-1}]
Biases = list[torch.Tensor | None]  # b_i [B, c, n_i]


@dataclass
class NFNConfig:
    """Options of :class:`NFN` (``ModelConfig.baseline``).

    Attributes:
        hidden: Channels ``c`` of the hidden weight-space features.
        layers: Number of NP layers.
        head_hidden: Width of the invariant MLP head (predict/classify); 0: ``4 * hidden``.
        io_embed: Learned position embeddings of input/output neurons in every layer.
    """

    hidden: int = 16
    layers: int = 3
    head_hidden: int = 0
    io_embed: bool = True


class NPLinear(nn.Module):
    r"""The NP-equivariant linear map between weight spaces of one chain.

    With :math:`\bar{\cdot}` a mean over the marked axis, the features of neuron space :math:`g`
    (the outputs of layer :math:`g`, the inputs of layer :math:`g+1`) are
    :math:`S_g = [\,W_g \bar\ast,\ b_g,\ \bar\ast W_{g+1}\,]` (row means of the layer writing it, its
    bias, column means of the layer reading it), and :math:`z = [\bar W_i, \bar b_i]_i` holds the
    global means. Then, channel-mixing every term with its own matrix,

    .. math::
        W'_i[j,k] &= A_i W_i[j,k] + R_i S_i[j] + Q_i S_{i-1}[k] + G_i z + \beta_i \\
        b'_i[j] &= B_i S_i[j] + H_i z + \gamma_i

    which spans every NP-equivariant linear map of the chain's weight space (the same layer, its
    row/column/global means, and those of the neighbouring layers and biases). Input and output
    neurons are not permuted by the network's symmetry; with ``io_embed`` learned embeddings
    :math:`E^{in}_k, E^{out}_j, E^{b}_j` are added to :math:`W_1[\cdot, k]`, :math:`W_L[j, \cdot]`
    and :math:`b_L[j]` first, so the layer can tell those neurons apart.

    Args:
        spec: The chain.
        c_in: Input channels ``c`` (weights carry ``c * k_i``).
        c_out: Output channels.
        io_embed: Add input/output position embeddings.

    Shapes:
        input: ``(W_i [B, c_in k_i, n_i, n_{i-1}], b_i [B, c_in, n_i] or None)`` per layer.
        output: the same with ``c_out``.
    """

    def __init__(self, spec: ChainSpec, c_in: int, c_out: int, io_embed: bool = True) -> None:
        super().__init__()
        lays = spec.layers
        L = len(lays)
        has_b = [lay.bias is not None for lay in lays]
        w_in = [c_in * lay.k for lay in lays]
        # features of neuron space g = 0..L: row means of W_g, b_g, column means of W_{g+1}
        d_space = [(w_in[g - 1] + c_in * has_b[g - 1] if g else 0) + (w_in[g] if g < L else 0) for g in range(L + 1)]
        d_glob = sum(w_in) + c_in * sum(has_b)
        self.has_bias = has_b
        self.w_self = nn.ModuleList(nn.Linear(w_in[i], c_out * lays[i].k, bias=False) for i in range(L))
        self.w_row = nn.ModuleList(nn.Linear(d_space[i + 1], c_out * lays[i].k, bias=False) for i in range(L))
        self.w_col = nn.ModuleList(nn.Linear(d_space[i], c_out * lays[i].k, bias=False) for i in range(L))
        self.w_glob = nn.ModuleList(nn.Linear(d_glob, c_out * lays[i].k) for i in range(L))
        self.b_space = nn.ModuleList(nn.Linear(d_space[i + 1], c_out, bias=False) if has_b[i] else nn.Identity()
                                     for i in range(L))
        self.b_glob = nn.ModuleList(nn.Linear(d_glob, c_out) if has_b[i] else nn.Identity() for i in range(L))
        self.io_embed = io_embed
        if io_embed:
            self.in_embed = nn.Parameter(torch.randn(w_in[0], lays[0].n_in) * 0.1)  # E^in [C_1, n_0]
            self.out_embed = nn.Parameter(torch.randn(w_in[-1], lays[-1].n_out) * 0.1)  # E^out [C_L, n_L]
            self.out_bias_embed = nn.Parameter(torch.randn(c_in, lays[-1].n_out) * 0.1) if has_b[-1] else None

    def forward(self, ws: Weights, bs: Biases) -> tuple[Weights, Biases]:
        """Apply the layer to weight-space features ``(ws, bs)``."""
        L = len(ws)
        ws, bs = list(ws), list(bs)
        if self.io_embed:
            ws[0] = ws[0] + self.in_embed[:, None, :]  # broadcast over hidden rows
            ws[-1] = ws[-1] + self.out_embed[:, :, None]  # broadcast over hidden columns
            if self.out_bias_embed is not None:
                bs[-1] = bs[-1] + self.out_bias_embed
        row = [w.mean(3) for w in ws]  # [B, C_i, n_i]: mean over inputs
        col = [w.mean(2) for w in ws]  # [B, C_i, n_{i-1}]: mean over outputs
        space = []
        for g in range(L + 1):
            parts = []
            if g > 0:  # written by layer g
                parts += [row[g - 1]] + ([bs[g - 1]] if bs[g - 1] is not None else [])
            if g < L:  # read by layer g + 1
                parts.append(col[g])
            space.append(torch.cat(parts, dim=1))  # S_g [B, D_g, n_g]
        glob = torch.cat([w.mean((2, 3)) for w in ws] + [b.mean(2) for b in bs if b is not None], dim=1)  # z [B, G]
        ws_out: Weights = []
        bs_out: Biases = []
        for i in range(L):
            w = (_mix(self.w_self[i], ws[i])  # [B, C', n_i, n_{i-1}]
                 + _mix(self.w_row[i], space[i + 1])[..., :, None]
                 + _mix(self.w_col[i], space[i])[..., None, :]
                 + self.w_glob[i](glob)[..., None, None])
            ws_out.append(w)
            if self.has_bias[i]:
                bs_out.append(_mix(self.b_space[i], space[i + 1]) + self.b_glob[i](glob)[..., None])  # [B, c', n_i]
            else:
                bs_out.append(None)
        return ws_out, bs_out


def _mix(lin: nn.Linear, t: torch.Tensor) -> torch.Tensor:
    """Apply ``lin`` to the channel axis (dim 1) of ``t [B, C, ...]``."""
    b, c, *rest = t.shape
    out = torch.matmul(lin.weight, t.reshape(b, c, -1))  # [B, C', prod(rest)]
    if lin.bias is not None:
        out = out + lin.bias[:, None]
    return out.reshape(b, -1, *rest)


def np_pool(ws: Weights, bs: Biases) -> torch.Tensor:
    r"""Invariant pooling: means over every neuron axis, :math:`[\bar W_1, \ldots, \bar W_L, \bar b_1, \ldots]`.

    Shapes:
        output: ``[B, sum_i C_i + sum_i c [b_i exists]]``.
    """
    return torch.cat([w.mean((2, 3)) for w in ws] + [b.mean(2) for b in bs if b is not None], dim=1)


class NFN(nn.Module):
    r"""NFN-NP on an MLP/CNN zoo: NP layers with pointwise ReLU, then an invariant or equivariant head.

    Predict/classify: :math:`y = \rho(\mathrm{pool}(\sigma(H_\ell \cdots \sigma(H_1 U))))`, invariant
    to hidden-neuron permutations. Edit: :math:`U' = U + \sigma_p \odot H_{out}(\ldots)` with the
    output layer zero-initialized (the identity map at start), equivariant; the result is a batch of
    the same structure with new ``edge_attr``/``x`` (``graphs.graph_to_vector`` gives the weights).

    Args:
        cfg: ``cfg.baseline`` holds :class:`NFNConfig` options; ``cfg.layout_json`` the chain.

    Raises:
        ValueError: The layout is not a plain MLP/CNN chain (see :meth:`ChainSpec.from_layout`).

    Shapes:
        input: a batch of ParamGraphs of the layout.
        output: ``[num_graphs, out_dim]``, or a batch with new weights (edit).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_task(cfg, ("predict", "classify", "edit"))
        self.cfg = parse_options(NFNConfig, cfg)
        self.layout = layout_of(cfg)
        self.spec = ChainSpec.from_layout(self.layout)
        self.edit = cfg.task == "edit"
        self.normalizer = Normalizer(cfg.num_norm_keys, cfg.normalize_by)
        c = self.cfg.hidden
        chans = [1] + [c] * self.cfg.layers
        self.layers = nn.ModuleList(NPLinear(self.spec, a, b, self.cfg.io_embed)
                                    for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.act = nn.ReLU()
        if self.edit:
            self.out = NPLinear(self.spec, chans[-1], 1, self.cfg.io_embed)
            for p in self.out.parameters():  # start at the identity map
                nn.init.zeros_(p)
            self.register_buffer("norm_keys", flat_norm_keys(self.layout, cfg.normalize_by), persistent=False)
        else:
            d = sum(chans[-1] * lay.k for lay in self.spec.layers) + chans[-1] * sum(
                lay.bias is not None for lay in self.spec.layers)
            h = self.cfg.head_hidden or 4 * c
            self.head = mlp([d, h, h, cfg.out_dim])

    def features(self, batch: Batch) -> tuple[Weights, Biases]:
        """Equivariant weight-space features after the NP stack (normalized input)."""
        rows = batch_to_rows(self.normalizer(batch), self.layout)  # [B, P]
        ws, bs = self.spec.pack(rows)
        for layer in self.layers:
            ws, bs = layer(ws, bs)
            ws = [self.act(w) for w in ws]
            bs = [None if b is None else self.act(b) for b in bs]
        return ws, bs

    def forward(self, batch: Batch) -> torch.Tensor | Batch:
        """Predictions ``[num_graphs, out_dim]``, or (edit) a batch with the edited weights."""
        ws, bs = self.features(batch)
        if not self.edit:
            return self.head(np_pool(ws, bs))
        dw, db = self.out(ws, bs)
        delta = self.spec.unpack(dw, db)  # [B, P], in normalized units
        rows = batch_to_rows(batch, self.layout)
        new = rows + delta * flat_scale(self.normalizer, self.norm_keys).to(rows.dtype)
        out = batch.clone()
        out.x, out.edge_attr = gather_features(new, self.layout, batch.edge_attr.shape[1])
        return out
