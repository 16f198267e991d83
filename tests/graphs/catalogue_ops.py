"""Catalogue networks for ops met in real model libraries (issue 13), with hand-derived counts.

Each network uses one op family the tracer once handled badly: ``reshape_as`` on a weight path (weight
standardization), two-tensor ``max``/``min``, the weight-norm parametrization, in-place and alias forms of
elementwise ops, ``im2col``/``col2im``/``Tensor.unfold`` on activations, and mixture-of-experts layers with
stacked expert weights (index + ``bmm`` as Hugging Face's ``batched_mm`` path, and Hugging Face's grouped
matmul op). Counting conventions are those of ``catalogue.py``; an expert index of a stacked weight is an
edge slot, like a kernel offset.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from tests.graphs.catalogue_base import Case, case, hf_case, inputs

__all__ = ["OPS_CASES", "OPS_HF_CASES"]


class StdConv2d(nn.Conv2d):
    """Conv2d with a standardized weight (zero mean, unit variance per output channel) times a gain.

    Written as NF-ResNets do: ``batch_norm`` in training mode over the flattened weight, then ``reshape_as``.
    """

    def __init__(self, cin: int, cout: int, k: int, **kw: object) -> None:
        super().__init__(cin, cout, k, **kw)
        self.gain = nn.Parameter(torch.rand(cout, 1, 1, 1) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, weight=self.gain.view(-1),
                         training=True, momentum=0.0, eps=1e-5).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class StdConvNet(nn.Module):
    """Two standardized convolutions 3 -> 8 -> 12, global mean, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = StdConv2d(3, 8, 3, padding=1), StdConv2d(8, 12, 3, padding=1)
        self.head = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))


class MinMaxMix(nn.Module):
    """Two branches combined with two-tensor ``torch.max``/``torch.min``/``maximum``; token max-pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(8, 10), nn.Linear(8, 10), nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, 8)
        a, b = self.a(x), self.b(x)
        h = torch.max(a, b) - 0.5 * torch.min(a, b) + torch.minimum(torch.tanh(a), b)
        return self.out(torch.max(h, dim=1).values)  # max over tokens: a reduction


class WeightNormNet(nn.Module):
    """Weight-norm parametrized layers: Linear (dim 0), Linear (dim None), Conv1d (dim 2, per kernel offset)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = weight_norm(nn.Linear(4, 6))
        self.fc2 = weight_norm(nn.Linear(6, 3), dim=None)
        self.conv = weight_norm(nn.Conv1d(3, 5, 3), dim=2)
        self.head = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, 4)
        h = self.fc2(F.relu(self.fc1(x))).transpose(1, 2)  # (B, 3, T)
        return self.head(F.relu(self.conv(h)).mean(dim=2))


class InPlaceMLP(nn.Module):
    """An MLP written with in-place activations and the alias names of arithmetic ops."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 12), nn.Linear(12, 10), nn.Linear(10, 3)
        self.scale = nn.Parameter(torch.rand(10) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        h = F.hardswish(self.fc1(x), inplace=True).div_(2.0)
        h = torch.multiply(h, torch.sigmoid(h))
        h = torch.divide(torch.subtract(F.relu6(self.fc2(h), inplace=True), 0.1), 2.0)
        h = F.elu(h, inplace=True).mul_(self.scale).clamp_(-3.0, 3.0)
        h = torch.true_divide(F.leaky_relu(h, 0.1, inplace=True), 1.5)
        return self.fc3(torch.clip(F.hardsigmoid(h, inplace=True), 0.05, 0.95))


class Im2ColNet(nn.Module):
    """``F.unfold`` patches feed a Linear; ``F.fold(F.unfold(.))`` (overlapping sum) feeds a conv; both join."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.patch = nn.Linear(6 * 4, 10)
        self.conv = nn.Conv2d(6, 5, 3, padding=1)
        self.head = nn.Linear(15, 3)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 3, 6, 6)
        a = F.relu(self.stem(x))
        cols = F.unfold(a, 2, stride=2)  # (B, 6 * 4, 9)
        p = F.gelu(self.patch(cols.transpose(1, 2))).mean(dim=1)  # (B, 10)
        folded = F.fold(F.unfold(a, 3, padding=1), (6, 6), 3, padding=1)  # (B, 6, 6, 6)
        c = F.relu(self.conv(folded)).mean(dim=(2, 3))  # (B, 5)
        return self.head(torch.cat([p, c], dim=1))


class SlidingWindow(nn.Module):
    """Token windows by ``Tensor.unfold`` (size 3, step 1), flattened into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.win, self.head = nn.Linear(4, 8), nn.Linear(8 * 3, 6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 7, 4)
        w = self.inp(x).unfold(1, 3, 1)  # (B, 5, 8, 3)
        return self.head(F.relu(self.win(w.flatten(2))).mean(dim=1))


class SparseMoE(nn.Module):
    """Top-k mixture of experts with stacked expert weights, written as Mixtral-style code does.

    ``grouped=False``: each routed copy of a token picks its expert's weights by index and applies them with
    ``bmm`` (Hugging Face's ``batched_mm`` path). ``grouped=True``: copies are sorted by expert and one grouped
    matmul applies each expert to its rows (Hugging Face's ``grouped_mm_fallback`` op; needs transformers).
    """

    def __init__(self, dim: int = 8, hidden: int = 12, experts: int = 4, top_k: int = 2, grouped: bool = False
                 ) -> None:
        super().__init__()
        self.experts, self.top_k, self.grouped = experts, top_k, grouped
        self.router = nn.Linear(dim, experts, bias=False)
        self.gate_up = nn.Parameter(torch.randn(experts, 2 * hidden, dim) * 0.3)  # [E, 2I, D]
        self.down = nn.Parameter(torch.randn(experts, dim, hidden) * 0.3)  # [E, D, I]

    def forward(self, x: Tensor) -> Tensor:  # x: (N, D)
        weights, idx = F.softmax(self.router(x), dim=-1).topk(self.top_k, dim=-1)  # (N, k)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        xs, ids = x.repeat_interleave(self.top_k, dim=0), idx.reshape(-1)  # (S, D), (S,)
        if self.grouped:
            y = self._grouped(xs, ids)
        else:
            gate, up = torch.bmm(self.gate_up[ids], xs.unsqueeze(-1)).squeeze(-1).chunk(2, dim=-1)
            y = torch.bmm(self.down[ids], (F.silu(gate) * up).unsqueeze(-1)).squeeze(-1)  # (S, D)
        y = y * weights.reshape(-1, 1)
        return y.view(x.shape[0], self.top_k, -1).sum(dim=1)

    def _grouped(self, xs: Tensor, ids: Tensor) -> Tensor:
        gmm = torch.ops.transformers.grouped_mm_fallback  # registered by transformers.integrations.moe
        order = ids.argsort(stable=True)
        counts = torch.histc(ids.to(xs.dtype), bins=self.experts, min=0, max=self.experts - 1)
        offs = counts.cumsum(0).to(torch.int32)
        gate, up = gmm(xs[order], self.gate_up.transpose(1, 2), offs).chunk(2, dim=-1)
        y = gmm(F.silu(gate) * up, self.down.transpose(1, 2), offs)
        return y[order.argsort()]


class AtenGroupedMM(nn.Module):
    """``F.grouped_mm`` (``aten._grouped_mm``, what Mixtral exports to on GPUs) on rows grouped by a constant offset.

    The CPU kernel takes bfloat16 only, so its operands are made integer-valued (``round``, ``clamp``; weights are
    small integers): every sum is then exact in bfloat16 and the soundness check stays at float64 precision.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.head = nn.Linear(6, 8), nn.Linear(8, 3)
        self.experts = nn.Parameter(torch.randint(-2, 3, (3, 8, 8)).float())  # [E, K, N]

    def forward(self, x: Tensor) -> Tensor:  # x: (6, 6): rows 0-1 use expert 0, 2-3 expert 1, 4-5 expert 2
        h = torch.round(4 * self.inp(x)).clamp(-4, 4)
        offs = torch.tensor([2, 4, 6], dtype=torch.int32)
        y = F.grouped_mm(h.bfloat16(), self.experts.bfloat16(), offs=offs)
        return self.head(F.relu(y.to(x.dtype)))


class MoEResidual(nn.Module):
    """Input projection, pre-norm residual MoE block, classifier (tokens flattened to rows)."""

    def __init__(self, grouped: bool = False) -> None:
        super().__init__()
        if grouped:
            importlib.import_module("transformers.integrations.moe")  # registers the grouped matmul op
        self.inp, self.norm = nn.Linear(6, 8), nn.LayerNorm(8)
        self.moe, self.head = SparseMoE(grouped=grouped), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, 6)
        h = self.inp(x).reshape(-1, 8)  # (B * T, 8)
        h = h + self.moe(self.norm(h))
        return self.head(h).view(x.shape[0], x.shape[1], -1)


_MOE_NOTE = ("R(8) = inp out = LayerNorm = the experts' input (gate_up cols) and output (down rows) axes; "
             "I(12) one group for every expert (a sound subgroup of permuting each expert alone), gate == up by "
             "chunk + silu(gate) * up: gate_up rows [I|I]; router rows fixed (top-k positions); expert index fixed "
             "(routing by data), an edge slot. Nodes R8 + gate_up rows 24 (two blocks of one axis; down cols == "
             "the first block).")

OPS_CASES: list[Case] = [
    case("std_conv_reshape_as", StdConvNet, inputs((2, 3, 6, 6)), (8, 12), 20,
         "Weight standardization (nf-regnet style): w.reshape(1, out, -1) -> batch_norm(training) -> "
         "reshape_as(w). Per-out-channel statistics over in x k x k are invariant to permuting in-channels, so "
         "conv1 A(8) and conv2 B(12) stay free; gains (out,1,1,1) share them. Nodes 8 + 12."),
    case("min_max_two_tensor", MinMaxMix, inputs((2, 5, 8)), (10,), 10,
         "max(a, b), min(a, b), minimum(tanh a, b) are elementwise: a's and b's outputs unify, A(10); "
         "max over tokens (dim=1) is a reduction. Nodes 10."),
    case("weight_norm_layers", WeightNormNet, inputs((2, 7, 4)), (3, 5, 6), 14,
         "_weight_norm(v, g, dim): w has v's labels, g's size>1 axis is v's dim axis: fc1 A(6) (g [6,1]), fc2 "
         "B(3) (dim None: scalar g), conv C(5) (dim 2: g [1,1,3] along the fixed kernel axis). Nodes 6+3+5."),
    case("inplace_alias_ops", InPlaceMLP, inputs((2, 8)), (10, 12), 22,
         "hardswish_, div_, multiply, subtract, divide, relu6_ (hardtanh_), elu_, mul_ by a (10,) Parameter "
         "(== fc2's group), clamp_, leaky_relu_, true_divide, hardsigmoid_, clip: all elementwise. fc1 A(12), "
         "fc2 B(10). Nodes 12 + 10."),
    case("im2col_col2im", Im2ColNet, inputs((2, 3, 6, 6)), (5, 6, 10), 21,
         "stem A(6); unfold(k2, s2): [B, A x K4, L9] (K, L fixed spatial), patch Linear input A x K: edge slots; "
         "patch out P(10); fold(unfold(a, 3)) gives back channels A (col2im splits A x K9); conv C(5); "
         "cat [P|C] -> head. Nodes 6 + 10 + 5."),
    case("sliding_window_unfold", SlidingWindow, inputs((2, 7, 4)), (6, 8), 14,
         "inp A(8); Tensor.unfold(1, 3, 1) fixes the token axis, the window offset W(3) is a fixed slot; "
         "flatten(2) gives the win Linear input A x W (edge slots); win out M(6). Nodes 8 + 6."),
    case("moe_batched_experts", MoEResidual, inputs((2, 3, 6)), (8, 12), 32,
         "Top-2 of 4 experts, experts picked by index + bmm (HF batched_mm). " + _MOE_NOTE),
    case("aten_grouped_mm", AtenGroupedMM, inputs((6, 6)), (8, 8), 16,
         "inp A(8) (round, clamp, bfloat16 casts are elementwise) == the grouped matmul's contraction K; its "
         "output N(8) one group for the 3 experts; expert index fixed, an edge slot; rows fixed (grouped by "
         "offset). Nodes 8 + 8."),
]

OPS_HF_CASES: list[Case] = [
    case("moe_grouped_mm", lambda: MoEResidual(grouped=True), inputs((2, 3, 6)), (8, 12), 32,
         "Same MoE, rows sorted by expert and applied by Hugging Face's grouped matmul op "
         "(transformers::grouped_mm_fallback, what Mixtral exports to). " + _MOE_NOTE, hf=True),
    hf_case("hf_mixtral", "MixtralForCausalLM", "MixtralConfig",
            dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=32,
                 use_cache=False, attn_implementation="sdpa", experts_implementation="batched_mm",
                 pad_token_id=0),
            inputs(("ids", 64, (2, 6))), (2, 8, 16, 24), 96,
            "Mixtral (batched_mm experts): R(16) (embed, RMSNorms, o_proj/down rows, router/gate_up cols, lm_head "
            "input); RoPE fixes Dqk; H2, Dv8; experts' I(24) shared by the 4 experts, gate == up; router rows and "
            "expert index fixed. Nodes R16 + qk 16 (H x fixed Dqk) + v 16 + gate_up rows 48. rtol 1e-6: "
            "MixtralRMSNorm computes in float32 even in a float64 model (measured 3e-8).", rtol=1e-6),
]
