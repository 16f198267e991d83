r"""``GHN``: a graph hypernetwork that predicts every parameter of an architecture in one forward pass.

The GHN reads an :class:`~metanets.hyper.archgraph.ArchGraph` (neuron groups and parameter tensors of
a traced :class:`graphs.Layout`, with shape encodings and long-range virtual edges) and returns a
``{name: tensor}`` dict with the exact shape and dtype of every parameter of the target.

1. **Encode** the architecture: ``layers`` rounds of typed message passing over the ArchGraph
   (``h_v \leftarrow h_v + \mathrm{MLP}(\mathrm{LN}[h_v, \mathrm{mean}_{u \to v} \mathrm{MLP}(h_u, e_{uv})])``).
2. **Unit embeddings**: unit ``i`` of group ``g`` has a context ``A h_g`` and a code ``B c_{g,i}``.
3. **Decode** each tensor ``W`` with axes ``1..m`` as a rank-``R`` CP product of per-axis factors,
   ``W[a_1, ..., a_m] = \sum_r \prod_j F_j[a_j, r]``. With ``x_j = \mathrm{LN}(\text{context}_j + t_p +
   \text{axis}_j)`` (``t_p`` the tensor node's state), ``F_j = C c_j \odot (1 + \Phi x_j) + \mathrm{MLP}(x_j +
   c_j)``: a linear code path (a flat singular spectrum, so the decoded tensor has full rank ``R`` from the
   start) modulated by the architecture, plus a nonlinear path (zero at initialization). Factors of
   permutable axes are centered over their units. Any shape decodes at the cost of ``numel x R``
   multiply-adds, without tiling or slicing a fixed-size output.
4. **Normalize** per role, as GHN-2's operation-dependent normalization: the weights of every output unit
   are standardized (computed from the factors, so the tensor is written in one pass) and scaled by
   ``g_{role} / \sqrt{\text{fan\_in}}``; biases and norm shifts by ``g_{role}``; norm scales are
   ``1 + g_{role} W``; running statistics are ``0``/``1`` and are recomputed on data
   (:func:`metanets.hyper.recompute_bn_stats`).

**Symmetry breaking, on purpose.** Everything above is permutation-equivariant, so units of a hidden
group with equal codes would get equal weights (a network that never breaks its symmetry). The codes
``c_{g,i}`` break it deliberately:

* ``symmetry_breaking="position"`` (default, as GHN-2's per-position decoding): ``c_{g,i}`` is a fixed
  random-Fourier code of the index ``i`` (:func:`unit_code`). The prediction is deterministic; unit ``i``
  of every hidden group is decoded from the same code, so wider networks reuse the codes of narrower
  ones and add new ones.
* ``symmetry_breaking="noise"``: hidden units get Gaussian codes drawn per forward. The map from codes
  to weights stays exactly equivariant (permuting the codes of a group permutes the predicted weights
  the same way; tested); the GHN is then a sampler of networks.

Fixed units (inputs, outputs, kernel offsets) always get the code of their position.

**What the GHN cannot see.** The ArchGraph is built from the parameters' symmetry structure, so
parameter-free ops (activation functions, max vs. average pooling, identity) are invisible: two
networks that differ only there get the same prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metanets.hyper.archgraph import GROUP_KINDS, MAX_NDIM, ROLES, ArchGraph, num_edge_types, role_index

__all__ = ["GHN", "GHNConfig"]

_WEIGHT_ROLES = {"linear", "conv", "embedding"}


@dataclass
class GHNConfig:
    """Hyperparameters of :class:`GHN`.

    Attributes:
        hidden: Width of node states and unit embeddings.
        layers: Message-passing rounds over the ArchGraph.
        rank: CP rank of every decoded tensor.
        hops: Range of the virtual edges between tensor nodes.
        symmetry_breaking: ``"position"`` (deterministic codes of the unit index) or ``"noise"`` (Gaussian).
    """

    hidden: int = 64
    layers: int = 4
    rank: int = 32
    hops: int = 4
    symmetry_breaking: str = "position"

    def __post_init__(self) -> None:
        if self.symmetry_breaking not in ("position", "noise"):
            raise ValueError(f"symmetry_breaking must be 'position' or 'noise', not {self.symmetry_breaking!r}")


def _check_out(arch: ArchGraph, out: dict[str, torch.Tensor]) -> None:
    """``out`` tensors must match the layout and be written outside autograd."""
    if torch.is_grad_enabled():
        raise ValueError("GHN(..., out=...) writes the predictions in place: call it under torch.no_grad() "
                         "(or leave out= out to get new tensors that keep their gradients)")
    shapes = {p.name: tuple(p.shape) for p in arch.layout.params}
    for name, t in out.items():
        if name not in shapes:
            raise ValueError(f"out= has {name!r}, which the architecture has no parameter of; pass only its "
                             "parameters (dict(module.named_parameters()) of the traced module)")
        if tuple(t.shape) != shapes[name]:
            raise ValueError(f"out[{name!r}] has shape {tuple(t.shape)}, the architecture's parameter has "
                             f"{shapes[name]}")


def unit_code(pos: torch.Tensor, freqs: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """``[n, dim]`` deterministic codes of integer positions: random Fourier features.

    Frequencies are uniform in ``[0, pi]`` and fixed at construction, so codes of different integers
    are nearly orthogonal (units ``i`` and ``j`` of a group decode to different weights) while the low
    frequencies still relate neighbouring positions (pixels, kernel offsets).
    """
    return torch.cos(pos.to(freqs.dtype)[:, None] * freqs[None] + phases[None]) * math.sqrt(2.0)


def sinusoidal(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """``[n, dim]`` sine/cosine codes of integer positions (Transformer-style, base 10000)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device, dtype=torch.float32) / max(half, 1))
    ang = pos.float()[:, None] * freq[None]
    out = torch.cat([ang.sin(), ang.cos()], dim=1)
    return nn.functional.pad(out, (0, dim - out.shape[1]))


def _mlp(d_in: int, d: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d_out))


class _Messages:
    """The message structure of an ArchGraph, shared by every round (built once per layout: :meth:`of`).

    A message depends only on its source node and its edge type, so each distinct ``(source, type)``
    pair is computed once (``K`` pairs, at most ``N x types``, against ``E`` edges: virtual edges make
    ``E ~ 100 N``) and the mean over incoming edges is a sparse ``[N, K]`` matrix with entries
    ``count / in-degree``. Equal to the per-edge mean up to summation order.
    """

    def __init__(self, edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int, num_types: int) -> None:
        src, dst = edge_index
        key = src * num_types + edge_type
        uniq, inv = torch.unique(key, return_inverse=True)
        self.src, self.type = uniq // num_types, uniq % num_types  # (K,)
        deg = torch.zeros(num_nodes, dtype=torch.float64, device=src.device).index_add_(
            0, dst, torch.ones_like(dst, dtype=torch.float64))
        pair = dst * len(uniq) + inv  # one entry per (target, message); repeated edges add up
        cell, count = torch.unique(pair, return_counts=True)
        rows, cols = cell // len(uniq), cell % len(uniq)
        self._index = torch.stack([rows, cols])
        self._value = count.to(torch.float64) / deg[rows]
        self._shape = (num_nodes, len(uniq))
        self.has_in = (deg > 0)[:, None]
        self._mean: dict[torch.dtype, torch.Tensor] = {}

    @classmethod
    def of(cls, arch: ArchGraph, num_types: int) -> _Messages:
        """The (cached, per layout, hops and device) message structure of ``arch``."""
        key = ("ghn_messages", arch.hops, num_types, str(arch.edge_index.device))
        got = arch.layout._cache.get(key)
        if got is None:
            got = arch.layout._cache[key] = cls(arch.edge_index, arch.edge_type, arch.node_feat.shape[0], num_types)
        return got

    def mean(self, g: torch.Tensor) -> torch.Tensor:
        """``[N, d]`` mean over each node's incoming edges of the per-pair messages ``g`` ``[K, d]``."""
        if g.dtype in (torch.float16, torch.bfloat16):  # sparse products in half precision: not on every device
            return self.mean(g.float()).to(g.dtype)
        a = self._mean.get(g.dtype)
        if a is None:
            a = self._mean[g.dtype] = torch.sparse_coo_tensor(
                self._index, self._value.to(g.dtype), self._shape, device=g.device, check_invariants=False).coalesce()
        return torch.sparse.mm(a, g)


class _Round(nn.Module):
    """One typed message-passing round with a residual, pre-normalized update."""

    def __init__(self, d: int, n_types: int) -> None:
        super().__init__()
        self.type_emb = nn.Embedding(n_types, d)
        self.msg = _mlp(2 * d, d, d)
        self.norm = nn.LayerNorm(2 * d)
        self.upd = _mlp(2 * d, d, d)

    def forward(self, h: torch.Tensor, messages: _Messages) -> torch.Tensor:
        # mean_{u->v} MLP([h_u, e_uv]): the first linear layer splits into a node term and a type term,
        # the second commutes with the mean, and each distinct (source, type) message is computed once
        lin1, act, lin2 = self.msg
        d = h.shape[1]
        node = h @ lin1.weight[:, :d].T  # (N, d)
        kind = self.type_emb.weight @ lin1.weight[:, d:].T + lin1.bias  # (types, d)
        g = act(node[messages.src] + kind[messages.type])  # (K, d)
        mean = messages.mean(g)  # (N, d)
        agg = mean @ lin2.weight.T + lin2.bias * messages.has_in.to(h.dtype)  # nodes without messages: 0
        return h + self.upd(self.norm(torch.cat([h, agg], dim=1)))


class GHN(nn.Module):
    r"""Graph hypernetwork: ``ArchGraph`` -> every parameter tensor of the architecture.

    The math and the symmetry breaking are in the module docstring.

    Args:
        config: :class:`GHNConfig`.

    Shapes:
        - input: an :class:`ArchGraph` (``ArchGraph.of(layout, hops=config.hops)``); optional ``codes``
          ``[U, hidden]`` unit codes (noise mode), e.g. from :meth:`unit_codes`.
        - output: ``{name: Tensor}`` for every non-buffer parameter and every running statistic of the
          layout, with the layout's shapes and dtypes. Other float buffers (constants such as masks) are
          not predicted; :func:`metanets.hyper.full_state_dict` takes them from the module.
    """

    def __init__(self, config: GHNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GHNConfig()
        d = config.hidden
        n_feat = 2 + len(GROUP_KINDS) + len(ROLES) + (MAX_NDIM + 1) + MAX_NDIM + 4
        self.encode = _mlp(n_feat, d, d)
        self.kind_emb = nn.Embedding(2, d)
        self.rounds = nn.ModuleList(_Round(d, num_edge_types(config.hops)) for _ in range(config.layers))
        self.group_proj = nn.Linear(d, d)
        self.code_proj = nn.Linear(d, d, bias=False)
        self.block_proj = nn.Linear(d, d, bias=False)
        self.axis_emb = nn.Embedding(MAX_NDIM * MAX_NDIM, d)  # (ndim - 1, axis) pairs
        self.tensor_proj = nn.Linear(d, d)
        self.ctx_norm = nn.LayerNorm(d)
        self.decode = _mlp(d, 2 * d, config.rank)
        self.code_lin = nn.Linear(d, config.rank, bias=False)
        self.film = nn.Linear(d, config.rank)
        self.scalar_head = _mlp(d, d, 1)
        self.log_gain = nn.Parameter(torch.zeros(len(ROLES)))
        g = torch.Generator().manual_seed(0)  # fixed codes: part of the model, saved in its state_dict
        self.register_buffer("code_freqs", torch.rand(d, generator=g) * math.pi)
        self.register_buffer("code_phases", torch.rand(d, generator=g) * 2 * math.pi)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the output gains: weights at unit gain, shifts and scale offsets small."""
        with torch.no_grad():
            nn.init.orthogonal_(self.code_lin.weight)
            nn.init.zeros_(self.decode[-1].weight)  # start from the flat-spectrum linear path
            nn.init.zeros_(self.decode[-1].bias)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            self.log_gain.zero_()
            for role in ("bias", "norm_bias", "norm_weight", "other", "scale"):
                self.log_gain[role_index(role)] = math.log(0.1)

    # ------------------------------------------------------------------ codes
    def unit_codes(self, arch: ArchGraph, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[U, hidden]`` codes of every unit: :func:`unit_code`, or Gaussian for hidden units in noise mode."""
        d = self.config.hidden
        codes = unit_code(arch.unit_pos, self.code_freqs, self.code_phases)
        if self.config.symmetry_breaking == "noise":
            movable = torch.tensor([not g.fixed for g in arch.layout.groups], dtype=torch.bool,
                                   device=arch.unit_pos.device)[arch.unit_group]
            noise = torch.randn(int(movable.sum()), d, generator=generator, device=codes.device, dtype=codes.dtype)
            codes = codes.masked_scatter(movable[:, None], noise)  # unit variance, as the Fourier codes
        return codes

    # ---------------------------------------------------------------- forward
    def forward(self, arch: ArchGraph, codes: torch.Tensor | None = None,
                out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Every parameter tensor of ``arch``, optionally written in place.

        ``out`` (e.g. ``dict(module.named_parameters())``, under ``torch.no_grad()``): tensors to write the
        predictions into, by name, with the layout's shapes; the returned dict holds those same tensors.
        Writing into existing memory skips allocating (and first touching) a new copy of every parameter,
        the way GHN-2 writes into the module it is given.
        """
        dev, dt = self.log_gain.device, self.log_gain.dtype
        if out is not None:
            _check_out(arch, out)
        arch = arch.to(dev)
        h = self.encode(arch.node_feat.to(dt)) + self.kind_emb(arch.node_kind)  # (G + P, d)
        if arch.hops > self.config.hops:  # its longer virtual edges have types the GHN has no embedding of
            raise ValueError(f"this ArchGraph was built with hops={arch.hops}, longer than the GHN's "
                             f"hops={self.config.hops}: build it with ArchGraph.of(layout, hops={self.config.hops})")
        messages = _Messages.of(arch, num_edge_types(self.config.hops))
        for rnd in self.rounds:
            h = rnd(h, messages)
        G = arch.num_groups
        codes = (self.unit_codes(arch) if codes is None else codes).to(dev, dt)
        # unit table: context (the group's state) and code (symmetry breaking) kept apart, so the
        # normalized context cannot drown the code; row -1 is the zero padding
        ctx = self.group_proj(h[:G])[arch.unit_group]  # (U, d)
        code = self.code_proj(codes)  # (U, d)
        units, proj = self._unit_table(ctx, code)
        tensors = self.tensor_proj(h[G:])  # (P, d)
        no_block = self.block_proj(sinusoidal(torch.zeros(1, dtype=torch.long, device=dev), h.shape[1]).to(dt))
        gains = self.log_gain.exp()
        result: dict[str, torch.Tensor] = {}
        for p_i, p in enumerate(arch.layout.params):
            if p.is_buffer and p.role not in ("running_mean", "running_var"):
                continue
            dtype = getattr(torch, p.dtype)
            target = None if out is None else out.get(p.name)
            if p.role in ("running_mean", "running_var"):
                fill = 0.0 if p.role == "running_mean" else 1.0
                value = torch.full(p.shape, fill, device=dev, dtype=dtype) if target is None else target.fill_(fill)
            else:
                factors = self._factors(arch, p_i, units, tensors[p_i], no_block, proj)
                value = self._assemble(p, factors, tensors[p_i], gains[role_index(p.role)], target)
                if target is None:
                    value = value.to(dtype)
                elif value is not target:
                    value = target.copy_(value)
            result[p.name] = value
        return result

    def _unit_table(self, ctx: torch.Tensor, code: torch.Tensor
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The unit table and the fused weight and bias of ``film`` and ``decode[0]``.

        The table is ``[U + 1, 3d + R]``: rows ``[context | code_lin(code) | decode[0].weight @ code]``, the
        last row zero padding.

        The code's linear terms are computed once per unit, not once per axis that reads the unit; sums of
        rows (product axes) stay exact because every column is linear in the context or the code.
        """
        units = torch.cat([ctx, self.code_lin(code), code @ self.decode[0].weight.T], dim=1)
        units = torch.cat([units, units.new_zeros(1, units.shape[1])])
        proj = (torch.cat([self.film.weight, self.decode[0].weight]), torch.cat([self.film.bias, self.decode[0].bias]))
        return units, proj

    def _factors(self, arch: ArchGraph, p_i: int, units: torch.Tensor, t: torch.Tensor, no_block: torch.Tensor,
                 proj: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """One ``[s_j, R]`` factor per axis of parameter ``p_i``.

        ``F = C c * (1 + film(x)) + decode(x + c)`` with ``x = LN(context + block + t + axis)``, computed as
        one fused matrix multiply of ``x`` (film and ``decode[0]``) plus the per-unit code terms of the table.
        """
        p = arch.layout.params[p_i]
        m, d, r = len(p.shape), self.config.hidden, self.config.rank
        factors = []
        for j, ax in enumerate(arch.axes[p_i]):
            if ax.span is not None:  # one whole group: a slice of the unit table, no gather
                rows = units[ax.span[0]:ax.span[0] + ax.span[1]]
            elif ax.units.shape[1]:
                rows = units[ax.units].sum(1)
            else:
                rows = units.new_zeros(len(ax.units), units.shape[1])
            ctx, code_r, code_h = rows[:, :d], rows[:, d:d + r], rows[:, d + r:]
            shift = t + self.axis_emb.weight[(m - 1) * MAX_NDIM + j]  # (d,): one add per row, not three
            if ax.blocked:
                x = ctx + (self.block_proj(sinusoidal(ax.block, d).to(t.dtype)) + shift)
            else:
                x = ctx + (no_block[0] + shift)
            x = self.ctx_norm(x)
            film_pre = torch.addmm(proj[1], x, proj[0].T)  # (s_j, R + 2d): film(x) | decode[0] weight @ x + bias
            hidden = self.decode[1](film_pre[:, r:] + code_h)
            out = torch.addmm(self.decode[2].bias, hidden, self.decode[2].weight.T)
            # a linear code path (flat spectrum: the decoded tensor has full rank R) modulated by the
            # context, plus a nonlinear path for everything else
            f = torch.addcmul(out + code_r, code_r, film_pre[:, :r])  # (s_j, R)
            if ax.movable and m > 1:  # no component shared by every unit of a permutable axis
                f = f - f.mean(0, keepdim=True)
            factors.append(f)
        return factors

    def _assemble(self, p, factors: list[torch.Tensor], t: torch.Tensor, gain: torch.Tensor,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """The CP product of ``factors``, normalized for its role (see the module docstring).

        With ``target`` the weight-like product is written straight into it where it can be (contiguous, the
        same dtype); the caller copies any other result.
        """
        m = len(factors)
        if m == 0:
            return self.scalar_head(t).reshape(()) * gain
        rest = factors[-1]  # Khatri-Rao product of the trailing factors: (prod s_2..s_m, R)
        for f in reversed(factors[1:-1]):
            rest = (f[:, None, :] * rest[None, :, :]).reshape(-1, rest.shape[1])
        if m == 1:
            w = factors[0].sum(1) / math.sqrt(self.config.rank)
            return 1.0 + gain * w if p.role == "norm_weight" else w * gain
        out_axis = p.direction[1] if p.direction else 0
        fan_in = p.numel // p.shape[out_axis]
        weightlike = p.role in _WEIGHT_ROLES or p.direction is not None
        scale = gain * (1.0 / math.sqrt(fan_in) if weightlike else 0.2)
        if out_axis == 0 and fan_in > 1 and p.role != "norm_weight":
            # every output unit's weights standardized (as weight normalization), computed from the factors:
            # row o is A[o] @ rest.T, its mean A[o] . sum(rest) / n and its mean square A[o] G A[o] / n
            a = factors[0]
            mu = a @ rest.sum(0) / fan_in  # (out,)
            sq = ((a @ (rest.T @ rest)) * a).sum(1) / fan_in
            std = ((sq - mu * mu).clamp_min(0) * fan_in / (fan_in - 1) + 1e-10).sqrt()  # eps: finite gradient
            s = scale / (std + 1e-5)
            if target is not None and target.is_contiguous() and target.dtype == a.dtype:
                torch.addmm(-(mu * s)[:, None], a * s[:, None], rest.T, out=target.view(a.shape[0], -1))
                return target
            w = torch.addmm(-(mu * s)[:, None], a * s[:, None], rest.T)  # one pass over the tensor
            return w.reshape(p.shape)
        # the rest (output axis not first, one input per unit, norm scales): the same on the full tensor
        w = (factors[0] @ rest.T).reshape(p.shape) / math.sqrt(self.config.rank)
        if p.role == "norm_weight":
            return 1.0 + gain * w
        if w.numel() == 1:
            return w * gain
        rows = w.movedim(out_axis, 0).reshape(w.shape[out_axis], -1)  # (out, fan_in)
        if fan_in > 1:
            rows = (rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + 1e-5)
            w = rows.reshape(w.movedim(out_axis, 0).shape).movedim(0, out_axis)
        else:
            w = w / (w.std() + 1e-5)
        return w * scale
