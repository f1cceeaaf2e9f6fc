"""Text encoders for classification: padded token ids ``(B, T)`` in, class logits out.

Padding is id ``pad_id`` (0 in seqgen's vocabularies); every encoder derives lengths and masks
from it, so the content of padded positions never changes the output (tested). Nets:

* :class:`RecurrentTextClassifier`: embedding -> (Bi)LSTM/(Bi)GRU (packed, so the recurrence stops
  at each sequence's end) -> pooling over time -> dropout -> linear. ``pooling``: ``last`` (the
  final state of each direction), ``mean``/``max`` over the real positions, or ``attention``
  (a learned additive query; Yang et al. 2016 style). Parameter names follow
  :class:`~seqgen.nets.RNNLM` (``embedding``, ``rnn``) so a trained language model initialises it.
* :class:`TextCNN` (Kim 2014): embedding -> parallel 1-D convolutions of several widths -> ReLU ->
  max over the windows inside the sentence -> dropout -> linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.recurrent import Recurrent

POOLINGS = ("last", "mean", "max", "attention")


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim)


class RecurrentTextClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, kind: str = "lstm", bidirectional: bool = True, pooling: str = "max",
                 dropout: float = 0.3, emb_dropout: float = 0.1, pad_id: int = 0, impl: str = "fused"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; available: {', '.join(POOLINGS)}")
        self.pad_id, self.pooling = pad_id, pooling
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.emb_drop = nn.Dropout(emb_dropout)
        self.rnn = Recurrent(kind, embedding_dim, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, impl=impl)
        width = self.rnn.output_size
        if pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        self.head_names = ("head",)  # the layer transfer learning replaces

    def encode(self, tokens: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        """The pooled sentence vector ``(B, directions * hidden)``. ``lengths``: the number of real
        tokens of each row, when the caller knows it on the host (seqgen's text batches carry it);
        otherwise counted from the padding, which on a GPU waits for the device (packing reads the
        lengths on the CPU)."""
        mask = tokens != self.pad_id
        if lengths is None:
            lengths = mask.sum(1).cpu()
        lengths = torch.as_tensor(lengths, dtype=torch.long).clamp_min(1)
        out, state = self.rnn(self.emb_drop(self.embedding(tokens)), lengths=lengths)
        mask = mask[:, : out.size(1)]
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state
            dirs = self.rnn.num_directions
            return torch.cat([h[-dirs + d] for d in range(dirs)], -1)
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.dtype)
            return (out * m).sum(1) / m.sum(1).clamp_min(1)
        if self.pooling == "max":
            return out.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
        weights = masked_softmax(self.attn(out).squeeze(-1), mask)
        self.last_attention = weights.detach()
        return (weights.unsqueeze(-1) * out).sum(1)

    def forward(self, tokens: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        return self.head(self.drop(self.encode(tokens, lengths)))


class TextCNN(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 128,
                 filter_sizes: Sequence[int] = (3, 4, 5), num_filters: int = 100, dropout: float = 0.5, pad_id: int = 0):
        super().__init__()
        filter_sizes = list(filter_sizes)
        if not filter_sizes or any(not isinstance(k, int) or k < 1 for k in filter_sizes):
            raise ConfigError(f"filter_sizes must be positive integers, got {filter_sizes!r}")
        self.pad_id, self.max_width = pad_id, max(filter_sizes)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k) for k in filter_sizes)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters * len(filter_sizes), num_classes)
        self.head_names = ("head",)  # the layer transfer learning replaces

    def encode(self, tokens: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        """The max-pooled features ``(B, filters * widths)``; ``lengths`` is accepted for a common
        interface with the recurrent encoder and not needed: the windows' mask is computed on the
        device, with no host read."""
        if tokens.size(1) < self.max_width:  # too short for the widest filter: pad (masked out below)
            tokens = torch.nn.functional.pad(tokens, (0, self.max_width - tokens.size(1)), value=self.pad_id)
        lengths = (tokens != self.pad_id).sum(1, keepdim=True)
        x = self.embedding(tokens).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            y = torch.relu(conv(x))  # (B, F, T - width + 1)
            # only windows inside the sentence count; one shorter than the filter keeps its first window
            start = torch.arange(y.size(2), device=tokens.device).unsqueeze(0)
            valid = (start + conv.kernel_size[0] <= lengths) | (start == 0)
            pooled.append(y.masked_fill(~valid.unsqueeze(1), float("-inf")).max(2).values)
        return torch.cat(pooled, 1)

    def forward(self, tokens: Tensor, lengths: Tensor | list[int] | None = None) -> Tensor:
        return self.head(self.drop(self.encode(tokens, lengths)))
