"""Attention networks of the catalogue (see catalogue_nets.py for the rest)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# --------------------------------------------------------------------------- attention
class SelfAttention(nn.Module):
    """Hugging Face style self-attention: separate q/k/v Linears, ``view`` to heads, ``transpose(1, 2)``.

    Args:
        dim: Model width.
        heads: Number of heads.
        qk_dim: Total q/k width (``heads * head_dim``); defaults to ``dim``.
        v_dim: Total v width; defaults to ``dim``.
        sdpa: Use ``F.scaled_dot_product_attention``; otherwise ``matmul`` + ``softmax``.
        causal: Apply a causal mask.
    """

    def __init__(self, dim: int, heads: int, qk_dim: int | None = None, v_dim: int | None = None,
                 sdpa: bool = True, causal: bool = False) -> None:
        super().__init__()
        qk_dim, v_dim = qk_dim or dim, v_dim or dim
        self.heads, self.sdpa, self.causal = heads, sdpa, causal
        self.q_proj, self.k_proj = nn.Linear(dim, qk_dim), nn.Linear(dim, qk_dim)
        self.v_proj, self.o_proj = nn.Linear(dim, v_dim), nn.Linear(v_dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, Dqk)
        k = self.k_proj(x).view(B, T, self.heads, -1).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, Dv)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, T)
            if self.causal:
                future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            if mask is not None:
                scores = scores + mask
            y = torch.matmul(scores.softmax(dim=-1), v)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class SplitQKVAttention(nn.Module):
    """GPT-2 style: one ``c_attn`` Linear(E, 3E) split into q, k, v; causal SDPA; ``c_proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn, self.c_proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T, E = x.shape
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in self.c_attn(x).split(E, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, E))


class GQAttention(nn.Module):
    """Grouped-query attention: ``kv_heads`` k/v heads repeated (``expand`` + ``reshape``) for ``heads`` q "
    "heads."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj, self.o_proj = nn.Linear(dim, heads * head_dim), nn.Linear(heads * head_dim, dim)
        self.k_proj, self.v_proj = nn.Linear(dim, kv_heads * head_dim), nn.Linear(dim, kv_heads * head_dim)

    def _repeat(self, t: Tensor) -> Tensor:  # (B, KV, T, D) -> (B, KV * rep, T, D), as HF repeat_kv
        B, KV, T, D = t.shape
        return t[:, :, None].expand(B, KV, self.heads // KV, T, D).reshape(B, self.heads, T, D)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self._repeat(self.k_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2))
        v = self._repeat(self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    """Pre-LN transformer block ``x + attn(ln(x))``, ``x + mlp(ln(x))`` around any attention module."""

    def __init__(self, dim: int, attn: nn.Module, mlp_dim: int) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(dim), attn, nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class SequenceClassifier(nn.Module):
    """Features ``(B, T, F)`` -> Linear -> blocks -> LayerNorm -> mean over tokens -> head."""

    def __init__(self, in_dim: int, dim: int, blocks: list[nn.Module], classes: int = 3) -> None:
        super().__init__()
        self.inp, self.blocks = nn.Linear(in_dim, dim), nn.ModuleList(blocks)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, attention_mask)
        return self.head(self.norm(h).mean(dim=1))


class MHAClassifier(nn.Module):
    """``nn.MultiheadAttention`` (batch_first, packed ``in_proj``) between an input Linear and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        y, _ = self.mha(h, h, h, need_weights=False)
        return self.head(y.mean(dim=1))


class TinyLM(nn.Module):
    """Token + learned positional embedding, pre-LN blocks, LM head tied to the token embedding."""

    def __init__(self, vocab: int = 20, dim: int = 12, heads: int = 3, layers: int = 2, seq: int = 6) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.1)
        self.blocks = nn.ModuleList(Block(dim, SelfAttention(dim, heads, causal=True), 2 * dim)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.tok.weight  # tied: one Parameter under two names

    def forward(self, ids: Tensor) -> Tensor:
        h = self.tok(ids) + self.pos  # ids: (B, seq)
        for block in self.blocks:
            h = block(h)
        return self.lm_head(self.norm(h))  # (B, T, vocab)


class SinusoidalEncoder(nn.Module):
    """Token embedding plus a fixed sinusoidal table (non-persistent buffer: a constant), one block, head."""

    def __init__(self, vocab: int = 20, dim: int = 12, seq: int = 6) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        pos = torch.arange(seq, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
        table = torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).flatten(1)  # (T, dim)
        self.register_buffer("pe", table, persistent=False)
        self.block = Block(dim, SelfAttention(dim, 3), 2 * dim)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 2)

    def forward(self, ids: Tensor) -> Tensor:
        h = self.block(self.tok(ids) + self.pe)  # ids: (B, seq)
        return self.head(self.norm(h).mean(dim=1))


class TinyViT(nn.Module):
    """Patch conv (4x4 on 16x16 -> 16 tokens), cls token and positional Parameters, blocks, cls readout."""

    def __init__(self, dim: int = 12, heads: int = 3, layers: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.1)
        self.blocks = nn.ModuleList(Block(dim, SelfAttention(dim, heads), 2 * dim) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, dim)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h)[:, 0])
