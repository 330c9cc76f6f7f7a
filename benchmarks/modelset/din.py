"""A small DIN-style recommendation model (Zhou et al. 2018, Deep Interest Network).

The candidate item (id + category embeddings) attends over the user's behaviour sequence with
DIN's activation unit (an MLP over [q, k, q-k, q*k], unnormalised weights, padding masked), the
weighted sum is the user's interest in this candidate, and an MLP with PReLU scores the click.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

USERS, ITEMS, CATES, EMB, HIST = 10_000, 50_000, 1_000, 18, 50


class ActivationUnit(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * dim, 80), nn.PReLU(), nn.Linear(80, 40),
                                 nn.PReLU(), nn.Linear(40, 1))

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        weights = self.mlp(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)
        weights = weights * mask
        return (weights.unsqueeze(-1) * keys).sum(1)


class DIN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.user = nn.Embedding(USERS, EMB)
        self.item = nn.Embedding(ITEMS, EMB)
        self.cate = nn.Embedding(CATES, EMB)
        self.attention = ActivationUnit(2 * EMB)
        self.mlp = nn.Sequential(nn.Linear(EMB + 3 * 2 * EMB, 200), nn.PReLU(),
                                 nn.Linear(200, 80), nn.PReLU(), nn.Linear(80, 1))

    def forward(self, user_id: Tensor, item_id: Tensor, cate_id: Tensor, hist_item_ids: Tensor,
                hist_cate_ids: Tensor, hist_mask: Tensor) -> Tensor:
        query = torch.cat([self.item(item_id), self.cate(cate_id)], dim=-1)
        keys = torch.cat([self.item(hist_item_ids), self.cate(hist_cate_ids)], dim=-1)
        interest = self.attention(query, keys, hist_mask)
        pooled = (keys * hist_mask.unsqueeze(-1)).sum(1)
        x = torch.cat([self.user(user_id), query, interest, pooled], dim=-1)
        return torch.sigmoid(self.mlp(x))


def din() -> nn.Module:
    return DIN()
