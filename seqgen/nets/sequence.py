"""Recurrent stack + linear head for sequence regression and per-step classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.recurrent import Recurrent


class RecurrentHead(nn.Module):
    """``kind`` recurrent stack over real features (``input_size``) or one-hot tokens
    (``vocab_size``), then a linear head on every step (``mode="every"``) or on the last
    step (``mode="last"``; with ``bidirectional`` the backward direction's last step is its
    output at position 0, as in BiRNN classifiers)."""

    def __init__(self, output_size: int, input_size: int | None = None, vocab_size: int | None = None,
                 kind: str = "lstm", hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, impl: str = "fused", mode: str = "last", forget_bias: float = 0.0):
        super().__init__()
        if (input_size is None) == (vocab_size is None):
            raise ConfigError("give exactly one of input_size (real features) or vocab_size (tokens)")
        if mode not in ("last", "every"):
            raise ConfigError(f"mode must be 'last' or 'every', got {mode!r}")
        self.vocab_size, self.mode = vocab_size, mode
        feat = input_size if input_size is not None else vocab_size
        self.rnn = Recurrent(kind, feat, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, impl=impl, forget_bias=forget_bias)
        self.head = nn.Linear(self.rnn.output_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if self.vocab_size is not None:
            x = F.one_hot(x, self.vocab_size).float()
        out, state = self.rnn(x, lengths=lengths)
        if self.mode == "every":
            return self.head(out)
        h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, B, H): final states
        if self.rnn.bidirectional:
            last = torch.cat([h[-2], h[-1]], -1)
        else:
            last = h[-1]
        return self.head(last)
