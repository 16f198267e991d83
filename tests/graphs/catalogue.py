"""Test oracle: networks with hand-derived neuron-permutation symmetry structure.

Every :class:`Case` names a small network, how to build it and feed it, and what a person derives by hand
from the rules in ``/work/shared/SYMMETRY.md``:

* ``group_sizes``: the sorted sizes of the independent permutable factors after all unifications (size-1
  factors dropped). A product label ``H x D`` contributes two factors ``H`` and ``D``.
* ``permutable_neurons``: graph nodes in neuron spaces that have at least one permutable factor. A neuron
  space is a distinct resolved label of a parameter axis; fixed spatial factors (kernel offsets, flattened
  positions) are not nodes; a product such as ``H x D`` is one space of ``H * D`` nodes. A space shared by
  several layers (residual stream, q/k of separate projections) counts once. A concatenated axis
  contributes its blocks' nodes, and the blocks of one parameter axis are distinct nodes even when their
  labels are equal (``[Q|K|V]`` with ``Q == K``), because one parameter cannot have parallel edges. Fixed
  gate factors of fused RNN weights, and the fixed expert index of stacked expert weights ``W[E, out, in]``,
  are edge slots, like kernel offsets.

Notation in the notes: ``R`` a residual stream, ``H`` heads, ``Dqk``/``Dv`` per-head q/k and v dims, ``M``
an MLP hidden layer, ``[A|B]`` a concatenation, ``A x B`` a product. Cases whose count depends on a
convention that SYMMETRY.md leaves open say "UNSURE" in the note and explain both readings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tests.graphs import catalogue_nets as nets
from tests.graphs.catalogue_base import Case, HFLogits
from tests.graphs.catalogue_base import case as _case
from tests.graphs.catalogue_base import hf_case as _hf_case
from tests.graphs.catalogue_base import inputs as _inputs
from tests.graphs.catalogue_ops import OPS_CASES, OPS_HF_CASES

__all__ = ["Case", "CASES", "HF_CASES", "ALL_CASES", "HFLogits"]


def _seq(*layers: nn.Module) -> Callable[[], nn.Module]:
    """Factory for ``nn.Sequential(*layers)`` built lazily (inside the seeded scope)."""
    return lambda: nn.Sequential(*(layer() for layer in layers))


L, C1, C2, C3 = nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d


def _m(cls: type[nn.Module], *args: object, **kw: object) -> Callable[[], nn.Module]:
    """Deferred module constructor for :func:`_seq`."""
    return lambda: cls(*args, **kw)


def _head(cin: int, cout: int) -> list[Callable[[], nn.Module]]:
    """Global average pool + flatten + Linear classifier."""
    return [_m(nn.AdaptiveAvgPool2d, 1), _m(nn.Flatten), _m(L, cin, cout)]


def _padding_mask() -> dict[str, Tensor]:
    """Additive key mask (B, 1, 1, T): the second sequence has its last two tokens padded."""
    return {"attention_mask": torch.tensor([[0.0] * 5, [0.0] * 3 + [-1e4] * 2]).view(2, 1, 1, 5)}


def _attn_model(dim: int, heads: int, mlp_dim: int, layers: int = 1, **attn_kw: object
                ) -> Callable[[], nn.Module]:
    return lambda: nets.SequenceClassifier(
        6, dim, [nets.Block(dim, nets.SelfAttention(dim, heads, **attn_kw), mlp_dim) for _ in range(layers)])


# --------------------------------------------------------------------------- hand-written cases
_MLP = [
    _case("mlp_relu", lambda: nets.mlp([8, 16, 16, 3]), _inputs((2, 8)), (16, 16), 32,
          "8-16-16-3: two hidden Linear output groups of 16; input and classes fixed."),
    _case("mlp_dropout", lambda: nets.mlp([8, 16, 12, 4], dropout=0.2), _inputs((2, 8)), (12, 16), 28,
          "8-16-12-4 with ReLU+Dropout (identity in eval): groups 16 and 12."),
    _case("mlp_activations",
          lambda: nets.mlp([6, 10, 12, 8, 6, 2], act=[nn.Tanh(), nn.GELU(), nn.SiLU(), nn.Sigmoid()]),
          _inputs((2, 6)), (6, 8, 10, 12), 36,
          "6-10-12-8-6-2, tanh/gelu/silu/sigmoid (elementwise, labels pass): 10+12+8+6."),
    _case("siren", lambda: nets.mlp([2, 16, 16, 16, 1], act=nets.Sine), _inputs((2, 2)),
          (16, 16, 16), 48, "SIREN 2-16-16-16-1, sin(30 x) after each hidden Linear (mul + sin pass)."),
    _case("mlp_nobias_leaky", lambda: nets.mlp([5, 7, 9, 2], act=lambda: nn.LeakyReLU(0.1), bias=False),
          _inputs((2, 5)), (7, 9), 16, "5-7-9-2, bias=False, LeakyReLU: groups 7 and 9."),
    _case("linear_only", _m(L, 4, 3), _inputs((2, 4)), (), 0,
          "Single Linear: its input axis is the network input, its output axis the output: both fixed."),
    _case("mlp_hidden_output", nets.HiddenOutputMLP, _inputs((2, 8)), (16,), 16,
          "8-16-16-3 also returning h1 = relu(fc1(x)): fc1's group is an output, so fixed; fc2's 16 free."),
    _case("mlp_two_heads", nets.TwoHeads, _inputs((2, 6)), (10, 12), 22,
          "Trunk 6-12-10 feeding two heads (3 and 1 outputs, both fixed): trunk groups 12 and 10."),
    _case("two_tower_add", nets.TwoTowers, _inputs((2, 4), (2, 6)), (8, 8), 16,
          "Two inputs: Linear(4,8)(x1) + Linear(6,8)(x2) unify into one group A(8); head 8-8-2 adds 8."),
    _case("weight_shared_recurrent", nets.SharedRecurrent, _inputs((2, 8)), (10,), 10,
          "Linear(10,10) applied twice: in == A, and out == in on the 2nd call: one group A(10)."),
    _case("tied_autoencoder", nets.TiedAutoencoder, _inputs((2, 8)), (4,), 4,
          "Decoder is F.linear(h, enc.weight.t()): the code axis (4) is the only group; 8-axes are I/O."),
    _case("sigmoid_gate", nets.SigmoidGate, _inputs((2, 8)), (16,), 16,
          "h * sigmoid(gate(h)): gate's output group unifies with h's, so fc and gate share A(16)."),
    _case("swiglu_rmsnorm", nets.SwiGLUResidual, _inputs((2, 8)), (12, 20), 32,
          "R(12) = inp out = down out (residual add) = RMSNorm weights; silu(gate)*up unifies gate/up: "
          "M(20)."),
    _case("glu_chunk", nets.ChunkGLU, _inputs((2, 8)), (12,), 24,
          "fc(8,24).chunk(2) splits the fresh 24-group into [A|B]; a*sigmoid(b) unifies A==B: rows [A|A], "
          "one group 12. Nodes 24: blocks of ONE parameter axis are distinct nodes even with equal labels "
          "(else fc.weight would have parallel edges); 12 under the literal 'distinct labels' reading."),
    _case("concat_branches", nets.ConcatBranches, _inputs((2, 8)), (6, 10), 16,
          "cat([relu(a(x)), tanh(b(x))]) -> out: out's input axis is [A(6)|B(10)], blocks stay separate."),
    _case("persistent_buffer_scale", lambda: nets.BufferScaledMLP(persistent=True), _inputs((2, 8)),
          (12, 16), 28,
          "h * gain with gain a persistent float buffer (in the state dict, so permuted with the axis like a "
          "parameter): groups 16 and 12. UNSURE if persistent buffers are treated as constants: then (12,), "
          "12."),
    _case("constant_buffer_fixes", lambda: nets.BufferScaledMLP(persistent=False), _inputs((2, 8)),
          (12,), 12,
          "Same net, gain a NON-persistent buffer (a constant varying along the hidden axis): fc1's 16 is "
          "fixed."),
    _case("prelu_channel_scale", nets.PReLUScaleMLP, _inputs((2, 6)), (8, 10), 18,
          "PReLU(10) weight == fc1 group (10); h*scale+shift Parameters (8,) == fc2 group (8)."),
    _case("embedding_bag", nets.EmbeddingBag, _inputs(("ids", 30, (2, 5))), (6, 8), 14,
          "Embedding(30,8): vocab fixed, D(8) a group; mean over tokens; MLP 8-6-2 adds 6."),
    _case("lstm_classifier", nets.LSTMClassifier, _inputs((2, 5, 4)), (8,), 8,
          "LSTM hidden H(8); weight_ih/hh rows FIXED(4 gates) x H. Nodes 8: the gate factor is an edge slot "
          "like a kernel offset, so rows map onto H. UNSURE: else 40 (gate rows 32 as own nodes + H 8)."),
]

_CONV = [
    _case("conv1d_flatten",
          _seq(_m(C1, 3, 8, 3, padding=1), _m(nn.ReLU), _m(C1, 8, 12, 3), _m(nn.ReLU), _m(nn.Flatten),
               _m(L, 12 * 14, 10), _m(nn.ReLU), _m(L, 10, 5)),
          _inputs((2, 3, 16)), (8, 10, 12), 30,
          "Conv1d 3->8->12 (L 16->16->14), flatten: Linear input C(12) x P(14), P fixed; fc hidden 10."),
    _case("conv1d_bn_grouped",
          _seq(_m(C1, 2, 6, 5, padding=2), _m(nn.BatchNorm1d, 6), _m(nn.ReLU),
               _m(C1, 6, 6, 3, padding=1, groups=3), _m(nn.BatchNorm1d, 6), _m(nn.ReLU),
               _m(nn.AdaptiveAvgPool1d, 1), _m(nn.Flatten), _m(L, 6, 2)),
          _inputs((2, 2, 20)), (2, 2, 3), 12,
          "conv1 A(6) -> grouped g=3: A = B3 x W2, out = B3 x W'2 (BN shares labels): groups 3,2,2; "
          "nodes A(6) + out(6).", warm=True),
    _case("conv2d_cnn",
          _seq(_m(C2, 3, 8, 3, padding=1), _m(nn.ReLU), _m(nn.MaxPool2d, 2),
               _m(C2, 8, 16, 3, stride=2, padding=1), _m(nn.ReLU), _m(nn.Flatten), _m(L, 16 * 2 * 2, 10),
               _m(nn.ReLU), _m(L, 10, 4)),
          _inputs((2, 3, 8, 8)), (8, 10, 16), 34,
          "Conv 3->8, maxpool, conv 8->16 stride 2 (2x2), flatten C(16) x P(4): groups 8, 16, fc 10."),
    _case("conv3d_cnn",
          _seq(_m(C3, 2, 4, 3, padding=1), _m(nn.ReLU), _m(C3, 4, 6, 3, stride=2, padding=1), _m(nn.ReLU),
               _m(nn.Flatten), _m(L, 6 * 8, 5)),
          _inputs((2, 2, 4, 4, 4)), (4, 6), 10,
          "Conv3d 2->4->6 (4^3 -> 2^3), flatten C(6) x P(8) into the classifier: groups 4 and 6."),
    _case("conv_flatten_channels_last", nets.ChannelsLastFlatten, _inputs((2, 3, 6, 6)), (5, 6), 11,
          "Conv 3->5 (6x6->4x4), NHWC permute, flatten: Linear input P(16) x C(5), C keeps its group; fc 6."),
    _case("grouped_conv",
          _seq(_m(C2, 3, 8, 1), _m(nn.ReLU), _m(C2, 8, 12, 3, padding=1, groups=4), _m(nn.ReLU),
               _m(C2, 12, 6, 1), _m(nn.ReLU), *_head(6, 3)),
          _inputs((2, 3, 6, 6)), (2, 3, 4, 6), 26,
          "conv1 A(8) = B4 x W2 (g=4); grouped out = B4 x W'3 (12); conv3 6. Nodes 8 + 12 + 6 (the grouped "
          "weight's in/g axis is the Within part of A, not a new space)."),
    _case("depthwise_conv",
          _seq(_m(C2, 3, 8, 1), _m(nn.ReLU), _m(C2, 8, 8, 3, padding=1, groups=8), _m(nn.ReLU),
               _m(C2, 8, 6, 1), _m(nn.ReLU), *_head(6, 3)),
          _inputs((2, 3, 6, 6)), (6, 8), 14,
          "Depthwise 8->8 (g=8): output channels are conv1's group A(8); pointwise 8->6 adds 6."),
    _case("depthwise_multiplier",
          _seq(_m(C2, 3, 4, 1), _m(nn.ReLU), _m(C2, 4, 8, 3, padding=1, groups=4), _m(nn.ReLU),
               _m(C2, 8, 5, 1), _m(nn.ReLU), *_head(5, 2)),
          _inputs((2, 3, 6, 6)), (2, 4, 5), 17,
          "Depthwise multiplier 2 on A(4): out = A x M(2) (8 nodes, out channel = 2a + m); pointwise 8->5. "
          "Nodes 4 + 8 + 5."),
    _case("pooling_zoo",
          _seq(_m(C2, 3, 6, 3, padding=1), _m(nn.ReLU), _m(nn.MaxPool2d, 2), _m(C2, 6, 8, 3, padding=1),
               _m(nn.ReLU), _m(nn.AvgPool2d, 2), _m(C2, 8, 10, 3, padding=1), _m(nn.ReLU),
               _m(nn.AdaptiveMaxPool2d, 2), _m(nn.Flatten), _m(L, 10 * 4, 5)),
          _inputs((2, 3, 16, 16)), (6, 8, 10), 24,
          "Max/avg/adaptive-max pooling pass channels: conv groups 6, 8, 10; flatten C(10) x P(4)."),
    _case("conv_scale_prelu_shared", nets.ConvScaleShared, _inputs((2, 3, 6, 6)), (4, 6), 10,
          "Per-channel scale Parameter == conv1 group (6); PReLU() and 0-d alpha are scalars (no "
          "constraint)."),
    _case("conv_channel_se", lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                                   nets.SqueezeExcite(8, 2), nn.Conv2d(8, 6, 3, padding=1),
                                                   nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                   nn.Linear(6, 3)),
          _inputs((2, 3, 6, 6)), (2, 6, 8), 16,
          "Squeeze-excitation: fc2's output gates x by multiplication, so fc2 out == conv1 A(8); SE hidden "
          "2; "
          "conv2 6."),
]

_NORM = [
    _case("bn1d_mlp",
          _seq(_m(L, 8, 16), _m(nn.BatchNorm1d, 16), _m(nn.ReLU), _m(L, 16, 12),
               _m(nn.BatchNorm1d, 12, affine=False), _m(nn.ReLU), _m(L, 12, 3)),
          _inputs((2, 8)), (12, 16), 28,
          "BatchNorm1d (trained running stats; the second affine=False) shares the Linear groups.",
          warm=True),
    _case("bn2d_cnn",
          _seq(_m(C2, 3, 8, 3, padding=1, bias=False), _m(nn.BatchNorm2d, 8), _m(nn.ReLU),
               _m(C2, 8, 8, 3, padding=1, bias=False), _m(nn.BatchNorm2d, 8), _m(nn.ReLU), *_head(8, 4)),
          _inputs((2, 3, 6, 6)), (8, 8), 16,
          "Conv-BN-ReLU x2 (trained running stats): each conv's 8 channels once, BN shares them.",
          warm=True),
    _case("layernorm_mlp",
          _seq(_m(L, 8, 16), _m(nn.LayerNorm, 16), _m(nn.GELU), _m(L, 16, 16), _m(nn.LayerNorm, 16),
               _m(nn.GELU), _m(L, 16, 4)),
          _inputs((2, 8)), (16, 16), 32, "LayerNorm over features passes the label; params share it."),
    _case("groupnorm_mixed",
          _seq(_m(C2, 3, 8, 3, padding=1), _m(nn.GroupNorm, 2, 8), _m(nn.ReLU), _m(C2, 8, 12, 3, padding=1),
               _m(nn.GroupNorm, 4, 12), _m(nn.ReLU), _m(C2, 12, 6, 3, padding=1), _m(nn.GroupNorm, 1, 6),
               _m(nn.ReLU), _m(C2, 6, 4, 1), _m(nn.GroupNorm, 4, 4), _m(nn.ReLU), *_head(4, 3)),
          _inputs((2, 3, 6, 6)), (2, 3, 4, 4, 4, 6), 30,
          "GN(2,8): 2 x 4; GN(4,12): 4 x 3; GN(1,6): one group 6; GN(4,4): 4 x 1 -> 4. Nodes 8+12+6+4."),
    _case("groupnorm_residual_refine", nets.GroupNormResidual, _inputs((2, 3, 6, 6)), (2, 2, 2, 6, 6), 20,
          "R(8) under GN(2,8) (c = 4a + w) and GN(4,8) (c = 2b + w'): common refinement c = 4a + 2b + d, "
          "three free factors of 2. Each block's hidden conv adds 6. Nodes R 8 + 6 + 6."),
    _case("instancenorm_affine",
          _seq(_m(C2, 3, 6, 3, padding=1), _m(nn.InstanceNorm2d, 6, affine=True, track_running_stats=True),
               _m(nn.ReLU), _m(C2, 6, 8, 3, padding=1),
               _m(nn.InstanceNorm2d, 8, affine=True, track_running_stats=True), _m(nn.ReLU), *_head(8, 3)),
          _inputs((2, 3, 6, 6)), (6, 8), 14,
          "InstanceNorm2d(affine, tracked running stats) shares each conv's group (6 and 8).", warm=True),
]

_RESIDUAL = [
    _case("resnet_two_stage", nets.TinyResNet, _inputs((2, 3, 8, 8)), (8, 8, 8, 16, 16, 16), 72,
          "S1(8) = stem = both stage-1 conv2 outputs; M1, M2 (8) inner convs; stage 2: S2(16) = 1x1 shortcut"
          " out "
          "= both conv2 outputs; M3, M4 (16). Nodes 3*8 + 3*16.", warm=True),
    _case("input_residual", nets.InputResidual, _inputs((2, 8)), (16, 16), 32,
          "x + f(x) with the raw input: f's output (8) joins the fixed input axis; f's hidden 16 and g's 16 "
          "free."),
    _case("densenet_concat", nets.TinyDenseNet, _inputs((2, 3, 8, 8)), (3, 3, 4, 6), 16,
          "stem A(4); dense layers add B(3), C(3): cat axes [A|B], [A|B|C] (BN params share them, blocks "
          "separate); transition D(6). Nodes 4+3+3+6 (concat axes add no new nodes).", warm=True),
    _case("unet_bilinear", lambda: nets.TinyUNet(transposed=False), _inputs((2, 3, 8, 8)), (4, 4, 8), 16,
          "enc1 A(4), enc2 B(8), bilinear upsample passes B (needs an upsample rule; fixed otherwise), "
          "cat [B|A] -> dec C(4) -> out (fixed). Nodes 4+8+4."),
    _case("unet_transpose", lambda: nets.TinyUNet(transposed=True), _inputs((2, 3, 8, 8)), (4, 4, 4, 8), 20,
          "enc1 A(4), enc2 B(8), ConvTranspose2d(8,4) (weight [in, out, k, k]) new group U(4), cat [U|A], "
          "dec C(4). Nodes 4+8+4+4."),
    _case("convnext_blocks", nets.TinyConvNeXt, _inputs((2, 3, 16, 16)), (8, 32, 32), 72,
          "R(8) = stem = depthwise outs = LayerNorm (channels-last) = pwconv2 outs = layer-scale gamma; "
          "pwconv1 M(32) per block. Nodes 8 + 32 + 32."),
]

_ATTENTION = [
    _case("mha_packed", nets.MHAClassifier, _inputs((2, 5, 6)), (4, 4, 16, 16), 96,
          "inp A(16); MHA(16, 4 heads): packed in_proj rows unflatten to 3 x E, select fixes 3, q/k/v share "
          "E = H(4) x D(4); out_proj O(16). UNSURE neurons: 96 = A16 + in_proj rows FIXED(3)xHxD 48 "
          "(distinct "
          "label) + out_proj cols HxD 16 + O16; 64 if the v-slice of in_proj were identified with out_proj "
          "cols."),
    _case("attention_sdpa", _attn_model(16, 2, 32), _inputs((2, 5, 6)), (2, 8, 8, 16, 32), 80,
          "R(16); q/k HxDqk (2x8), v HxDv (2x8) share H; MLP M(32). Nodes R16 + qk 16 + v 16 + M32."),
    _case("attention_matmul_causal", _attn_model(16, 2, 24, qk_dim=8, v_dim=12, sdpa=False, causal=True),
          _inputs((2, 5, 6)), (2, 4, 6, 16, 24), 60,
          "matmul+softmax with constant causal mask (token axes only). Dqk(4) != Dv(6): q/k 2x4, v 2x6, R16, "
          "M24. Nodes 16 + 8 + 12 + 24."),
    _case("attention_mask_kwarg", _attn_model(12, 3, 24), _inputs((2, 5, 6)), (3, 4, 4, 12, 24), 60,
          "SDPA with an additive attention_mask keyword input (B,1,1,T): fixes batch/token axes only. "
          "R12, H3, Dqk4, Dv4, M24.",
          kwargs=_padding_mask),
    _case("split_qkv_attention",
          lambda: nets.SequenceClassifier(6, 16, [nets.Block(16, nets.SplitQKVAttention(16, 4), 32)]),
          _inputs((2, 5, 6)), (4, 4, 4, 16, 32), 96,
          "c_attn(16,48).split(16): rows [Q|K|V] with Q==K (HxDqk) and V (HxDv), H shared (4, 4, 4); R16, "
          "M32. Nodes R16 + c_attn rows 48 (Q, K, V blocks of one axis are distinct nodes; V == c_proj "
          "cols) + M32. 80 if the equal Q and K blocks were merged."),
    _case("gqa_attention",
          lambda: nets.SequenceClassifier(6, 16, [nets.Block(16, nets.GQAttention(16, 4, 2, 4), 24)]),
          _inputs((2, 5, 6)), (2, 2, 4, 4, 16, 24), 88,
          "GQA 4 q heads, 2 kv heads, D 4: q heads = KV(2) x Rep(2) (Rep from expand+reshape, free), Dqk 4, "
          "Dv 4, R16, M24. Nodes R16 + q 16 + k 8 + v 8 + o-in 16 + M24. UNSURE: if expand's new axis is "
          "fixed, Rep drops: (2,4,4,16,24), same 88."),
    _case("tiny_lm_tied", nets.TinyLM, _inputs(("ids", 20, (2, 6))), (3, 3, 4, 4, 4, 4, 12, 24, 24), 108,
          "Embedding D == R(12) == pos Parameter == tied lm_head input (one Parameter); 2 causal blocks: "
          "H3, Dqk4, Dv4, M24 each. Nodes 12 + 2*(12+12+24)."),
    _case("sinusoidal_pe_fixes_stream", nets.SinusoidalEncoder, _inputs(("ids", 20, (2, 6))),
          (3, 4, 4, 24), 48,
          "Constant sin/cos table (non-persistent buffer) varies along the model axis, so R(12) is fixed; "
          "the block keeps H3, Dqk4, Dv4, M24. Nodes qk 12 + v 12 + M24."),
    _case("tiny_vit", nets.TinyViT, _inputs((2, 3, 16, 16)), (3, 3, 4, 4, 4, 4, 12, 24, 24), 108,
          "Patch conv out == cls token == pos Parameter == R(12) (token axis fixed: cat of cls and patches); "
          "2 blocks H3, Dqk4, Dv4, M24. Nodes 12 + 2*48."),
]

CASES: list[Case] = _MLP + _CONV + _NORM + _RESIDUAL + _ATTENTION + OPS_CASES


# --------------------------------------------------------------------------- Hugging Face cases
_TEXT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_labels=3)

HF_CASES: list[Case] = [
    _hf_case("hf_bert", "BertForSequenceClassification", "BertConfig",
             dict(_TEXT, intermediate_size=64, max_position_embeddings=16, attn_implementation="sdpa"),
             _inputs(("ids", 64, (2, 8))), (2, 2, 16, 16, 16, 16, 32, 32, 64, 64), 320,
             "Post-LN BERT: word/pos/type embeddings (vocab, positions, types fixed) and every dense output "
             "added to the stream are R(32); per layer H2, Dqk16, Dv16, intermediate I64; pooler dense P(32) "
             "(tanh, then classifier). Nodes R32 + P32 + 2*(qk32 + v32 + I64)."),
    _hf_case("hf_gpt2", "GPT2LMHeadModel", "GPT2Config",
             dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, n_inner=64, use_cache=False,
                  bos_token_id=0, eos_token_id=0, attn_implementation="eager"),
             _inputs(("ids", 64, (2, 8))), (2, 2, 16, 16, 16, 16, 32, 64, 64), 352,
             "GPT-2 (Conv1D weights are [in, out], used via addmm): wte == lm_head (tied), R(32); c_attn "
             "rows [Q|K|V] from .split with Q==K (H2 x Dqk16) and V (H2 x Dv16); c_fc M64. Causal mask "
             "constant on token axes. Nodes R32 + 2*(c_attn rows 96 + M64), as in split_qkv_attention."),
    _hf_case("hf_vit", "ViTForImageClassification", "ViTConfig",
             dict(image_size=16, patch_size=4, num_channels=3, hidden_size=24, num_hidden_layers=2,
                  num_attention_heads=3, intermediate_size=48, num_labels=5, attn_implementation="sdpa"),
             _inputs((2, 3, 16, 16)), (3, 3, 8, 8, 8, 8, 24, 48, 48), 216,
             "ViT: patch conv out == cls_token == position_embeddings == R(24) (pre-LN); per layer H3, Dqk8, "
             "Dv8, I48; classifier on token 0. Nodes R24 + 2*(24 + 24 + 48)."),
    _hf_case("hf_resnet_basic", "ResNetForImageClassification", "ResNetConfig",
             dict(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[2, 1], layer_type="basic",
                  num_labels=4),
             _inputs((2, 3, 32, 32)), (8, 8, 8, 16, 16), 56,
             "Stem conv+BN S1(8) (7x7 s2, maxpool); stage 1: two basic layers with identity shortcut, inner "
             "M1, M2 (8), second convs == S1; stage 2: 1x1 shortcut S2(16) == second conv, inner M3(16). "
             "Nodes 8*3 + 16*2.",
             warm=True),
    _hf_case("hf_resnet_bottleneck", "ResNetForImageClassification", "ResNetConfig",
             dict(num_channels=3, embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1],
                  layer_type="bottleneck", num_labels=4),
             _inputs((2, 3, 32, 32)), (4, 4, 8, 8, 8, 16, 32), 80,
             "Stem S0(8). Bottleneck (reduction 4) 8->16: shortcut S1(16), 1x1 A1(4), 3x3 B1(4), 1x1 == S1; "
             "16->32: shortcut S2(32), A2(8), B2(8). Nodes 8+16+4+4+32+8+8.",
             warm=True),
    _hf_case("hf_convnext", "ConvNextForImageClassification", "ConvNextConfig",
             dict(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[8, 16], depths=[2, 1],
                  image_size=32, layer_scale_init_value=0.5, num_labels=3),
             _inputs((2, 3, 32, 32)), (8, 16, 32, 32, 64), 152,
             "Stage 1 R1(8) = patch conv = channels-first LN = dwconv = pwconv2 = layer scale; two pwconv1 "
             "M(32). Downsampling LN(R1) + conv k2 s2 -> R2(16); one layer M(64). Nodes 8+16+32+32+64."),
    _hf_case("hf_llama", "LlamaForSequenceClassification", "LlamaConfig",
             dict(_TEXT, intermediate_size=48, num_key_value_heads=2, max_position_embeddings=32,
                  pad_token_id=0, use_cache=False, attn_implementation="sdpa"),
             _inputs(("ids", 64, (2, 8))), (2, 2, 16, 16, 32, 48, 48), 256,
             "Llama: R(32) (embed, RMSNorm weights, o/down outputs, score input). RoPE cos/sin constants and "
             "rotate_half fix Dqk; per layer H2, Dv16, gate==up I48. Nodes R32 + 2*(qk 32 [H x fixed Dqk] + "
             "v 32 + I48). rtol 1e-6: LlamaRMSNorm casts to float32 even in a float64 model (measured 6e-8).",
             rtol=1e-6),
] + OPS_HF_CASES

ALL_CASES: list[Case] = CASES + HF_CASES
