"""A BERT-style encoder (Devlin et al. 2018): token + position + segment embeddings, post-LN
encoder layers with masked multi-head self-attention and a GELU feed-forward.

Smaller than BERT-base (hidden 256, 4 layers, 4 heads, FFN 1024; the BERT-mini/small family) so
that a benchmark pass stays short on two cores, but every op of the real thing is there. Batch
and sequence axes are dynamic in the exported graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, s, h = x.shape
        d = h // self.heads
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.out(ctx))
        return self.ln2(x + self.ffn(x))


class BertEncoder(nn.Module):
    def __init__(self, vocab: int = 30522, hidden: int = 256, layers: int = 4, heads: int = 4,
                 ffn: int = 1024, max_pos: int = 512) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_pos, hidden)
        self.segment = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn) for _ in range(layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.pos(positions) + self.segment(torch.zeros_like(input_ids))
        x = self.ln(x)
        # Additive mask: 0 where attended, -10000 where padded (BERT's convention).
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        return x


def bert_encoder() -> nn.Module:
    return BertEncoder()
