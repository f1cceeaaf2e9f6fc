"""Recurrent language-model network: embedding -> recurrent stack -> linear decoder.

As in pytorch/examples ``word_language_model`` (and Press & Wolf 2017 for weight tying): the
decoder may share its weight matrix with the embedding (``tie_weights``), which needs
``embedding_dim == hidden_size``; dropout on the embeddings and on the recurrent output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.losses import layer_cross_entropy
from seqgen.nets.recurrent import Recurrent, State
from seqgen.utils import check_probability


class RNNLM(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_size: int = 256,
        num_layers: int = 2,
        kind: str = "lstm",
        dropout: float = 0.0,
        emb_dropout: float | None = None,
        tie_weights: bool = False,
        impl: str = "fused",
        init_range: float | None = 0.1,
        forget_bias: float = 0.0,
    ):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim)):
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if tie_weights and embedding_dim != hidden_size:
            raise ConfigError(f"tie_weights needs embedding_dim == hidden_size (got {embedding_dim} and {hidden_size})")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        check_probability("dropout", dropout)
        if emb_dropout is not None:
            check_probability("emb_dropout", emb_dropout)
        self.emb_drop = nn.Dropout(dropout if emb_dropout is None else emb_dropout)
        self.rnn = Recurrent(kind, embedding_dim, hidden_size, num_layers=num_layers, dropout=dropout, impl=impl,
                             batch_first=True, forget_bias=forget_bias)
        self.out_drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if init_range:
            nn.init.uniform_(self.embedding.weight, -init_range, init_range)
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)
            nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def init_state(self, batch_size: int) -> State:
        return self.rnn.init_state(batch_size)

    def forward(self, tokens: Tensor, state: State | None = None, targets: Tensor | None = None) -> tuple[Tensor, State]:
        """``tokens`` (B, T) -> logits (B, T, V) and the final recurrent state; with ``targets``
        (B, T), the mean next-token NLL (fp32 scalar) instead of the logits: from a vocabulary of
        ``seqgen.nets.losses.FUSED_MIN_CLASSES`` up, computed by :func:`~seqgen.nets.losses.linear_cross_entropy`
        (decoder and loss fused, no (B, T, V) fp32 logits: the same value and gradients, faster, and
        much faster under bf16); below it (a character model) the logits' cross-entropy, which is as
        fast or faster there (``benchmarks/lm_loss.py``)."""
        x = self.emb_drop(self.embedding(tokens))
        out, state = self.rnn(x, state)
        out = self.out_drop(out)
        if targets is not None:
            return layer_cross_entropy(out.reshape(-1, out.size(-1)), self.decoder, targets.reshape(-1)), state
        return self.decoder(out), state

    def generate(self, prompt: Tensor, max_new_tokens: int, *args: Any, **kwargs: Any) -> Tensor:
        """Sample a continuation of ``prompt`` (B, T0) -> (B, max_new_tokens) token ids; the
        sampling settings (temperature, top_k, top_p, generator) are :func:`sample_continuation`'s."""
        return sample_continuation(self, prompt, max_new_tokens, *args, **kwargs)


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Temperature, top-k and nucleus (top-p, Holtzman et al. 2020) filtering of (B, V) logits."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, -1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def sample_continuation(
    net: nn.Module,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    if prompt.dim() != 2 or prompt.size(1) == 0:
        raise ConfigError("the prompt must hold at least one token")
    vocab = net.vocab_size
    if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
        raise ConfigError(f"prompt token ids must lie in [0, {vocab}), got range [{int(prompt.min())}, {int(prompt.max())}]")
    was_training = net.training
    net.eval()
    logits, state = net(prompt)
    out = []
    for _ in range(max_new_tokens):
        probs = torch.softmax(filter_logits(logits[:, -1].float(), temperature, top_k, top_p), -1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        out.append(nxt)
        logits, state = net(nxt, state)
    net.train(was_training)
    return torch.cat(out, 1) if out else prompt.new_zeros(prompt.size(0), 0)
