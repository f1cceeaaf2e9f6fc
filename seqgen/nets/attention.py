"""Attention over a source sequence: Bahdanau (additive) and Luong (dot, general).

Every module maps ``query (B, Tq, Hq)`` (or ``(B, Hq)``), ``keys (B, S, Hk)`` and a boolean
``mask (B, S)`` (True at real source positions) to ``(context (B, Tq, Hk), weights (B, Tq, S))``;
padded positions get weight exactly 0. ``precompute(keys)`` does the query-independent part
once per source sentence (the key projection), so a decoder calling the module at every step
pays only for the query side.

* :class:`BahdanauAttention` (Bahdanau et al. 2015): ``score(q, k) = v^T tanh(W_q q + W_k k)``.
* :class:`LuongAttention` (Luong et al. 2015): ``dot``: ``q^T k`` (needs ``Hq == Hk``);
  ``general``: ``q^T W k``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.text import masked_softmax

ATTENTIONS = ("bahdanau", "luong_dot", "luong_general", "none")


class _Attention(nn.Module):
    def precompute(self, keys: Tensor) -> Tensor:
        return keys

    def scores(self, query: Tensor, keys: Tensor, pre: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor, pre: Tensor | None = None) -> tuple[Tensor, Tensor]:
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        pre = self.precompute(keys) if pre is None else pre
        weights = masked_softmax(self.scores(query, keys, pre).float(), mask.unsqueeze(1)).to(keys.dtype)
        context = torch.bmm(weights, keys)
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


class BahdanauAttention(_Attention):
    def __init__(self, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        attn_size = attn_size or query_size
        self.query_proj = nn.Linear(query_size, attn_size, bias=False)
        self.key_proj = nn.Linear(key_size, attn_size)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def precompute(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, S, A)

    def scores(self, query: Tensor, keys: Tensor, pre: Tensor) -> Tensor:
        q = self.query_proj(query)  # (B, Tq, A)
        return self.v(torch.tanh(q.unsqueeze(2) + pre.unsqueeze(1))).squeeze(-1)  # (B, Tq, S)


class LuongAttention(_Attention):
    def __init__(self, query_size: int, key_size: int, score: str = "general"):
        super().__init__()
        if score not in ("dot", "general"):
            raise ConfigError(f"Luong attention score must be dot or general, got {score!r}")
        if score == "dot" and query_size != key_size:
            raise ConfigError(f"Luong dot attention needs equal decoder and encoder-output sizes, got {query_size} and "
                              f"{key_size} (a bidirectional encoder doubles its output): use luong_general")
        self.score = score
        self.key_proj = nn.Linear(key_size, query_size, bias=False) if score == "general" else None

    def precompute(self, keys: Tensor) -> Tensor:
        return keys if self.key_proj is None else self.key_proj(keys)  # W k, (B, S, Hq)

    def scores(self, query: Tensor, keys: Tensor, pre: Tensor) -> Tensor:
        return torch.bmm(query, pre.transpose(1, 2))
