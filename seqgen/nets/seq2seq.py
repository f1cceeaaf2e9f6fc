"""Encoder-decoder translation nets (Cho et al. 2014, Sutskever et al. 2014) with attention
(Bahdanau et al. 2015, Luong et al. 2015), and their decoding: greedy and batched beam search.

:class:`Seq2Seq` (``attention`` one of :data:`~seqgen.nets.attention.ATTENTIONS`):

* **encoder**: source embedding -> (Bi)GRU/LSTM stack (packed: padded steps are skipped);
  its final states, both directions concatenated, pass through ``tanh(Linear)`` ("bridge") to
  initialise each decoder layer.
* ``bahdanau``: at step ``t`` the previous decoder state queries additive attention; the context
  ``c_t`` is fed with the previous target embedding into the decoder RNN;
  readout ``tanh(W [s_t; c_t; e_{t-1}])`` -> vocabulary.
* ``luong_dot`` / ``luong_general``: the decoder RNN runs on embeddings alone; its output ``s_t``
  queries the encoder outputs; readout ``tanh(W_c [s_t; c_t])`` (Luong's attentional hidden state,
  without input feeding) -> vocabulary.
* ``none`` (the no-attention baseline, Cho et al.): the fixed summary vector (final encoder states)
  is fed at every step and to the readout, in place of an attention context.

Without Bahdanau attention and with full teacher forcing the decoder runs over the whole target
in one fused RNN call (no per-step loop); the step-by-step path gives the same outputs (tested).
Token ids: ``pad_id`` 0, ``bos_id`` 2, ``eos_id`` 3 (seqgen's sequence vocabularies).

Decoding returns ``(tokens (B, L), scores (B,), attention (B, L, S) or None)``: ``tokens`` end with
``eos_id`` (then ``pad_id``) unless the length limit ``min(max_len, max_len_a * S + max_len_b)``
came first. :meth:`Seq2Seq.beam_search` keeps ``beam_size`` hypotheses per sentence in one batch of
``B * beam_size`` rows; finished hypotheses stay in the beam with a frozen score, and the winner
maximises ``log p / lp`` with the GNMT length penalty ``lp = ((5 + len) / 6) ** len_penalty``
(``len_penalty=0``: raw log-probability). Beam search can prune the greedy path, so with
``include_greedy`` (default) the greedy hypothesis is a candidate too: the returned score is never
below greedy's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.attention import ATTENTIONS, BahdanauAttention, LuongAttention
from seqgen.nets.losses import layer_cross_entropy
from seqgen.nets.recurrent import Recurrent, State


class Memory(NamedTuple):
    """The encoded source: outputs (keys), their precomputed attention projection, the source
    mask and the final-state summary."""

    keys: Tensor  # (B, S, dirs * H)
    pre: Tensor | None  # (B, S, A)
    mask: Tensor  # (B, S) bool
    summary: Tensor  # (B, dirs * H)

    def select(self, idx: Tensor) -> Memory:
        return Memory(*(None if t is None else t.index_select(0, idx) for t in self))


def select_state(state: State, idx: Tensor) -> State:
    """Rows ``idx`` of a decoder state ``(layers, B, H)`` (or an LSTM pair)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, idx) for s in state)  # type: ignore[return-value]
    return state.index_select(1, idx)


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT (Wu et al. 2016): ``((5 + |Y|) / 6) ** alpha``."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embedding_dim: int = 256, hidden_size: int = 512,
                 num_layers: int = 1, kind: str = "gru", bidirectional: bool = True, attention: str = "bahdanau",
                 attn_size: int | None = None, dropout: float = 0.3, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3,
                 max_len: int = 200, max_len_a: float = 1.5, max_len_b: int = 10):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ConfigError(f"unknown attention {attention!r}; available: {', '.join(ATTENTIONS)}")
        if kind not in ("gru", "lstm", "rnn"):
            raise ConfigError(f"unknown recurrent kind {kind!r}; available: gru, lstm, rnn")
        for name, v in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                        ("embedding_dim", embedding_dim), ("hidden_size", hidden_size), ("max_len", max_len)):
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.kind, self.attention_kind = kind, attention
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.max_len, self.max_len_a, self.max_len_b = max_len, max_len_a, max_len_b
        self.tgt_vocab_size = tgt_vocab_size
        self.src_embedding = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = Recurrent(kind, embedding_dim, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                                 dropout=dropout)
        enc_out = self.encoder.output_size
        self.bridge = nn.Linear(enc_out, hidden_size)
        self.bridge_c = nn.Linear(enc_out, hidden_size) if kind == "lstm" else None
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=pad_id)
        self.feeds_context = attention in ("bahdanau", "none")  # context goes into the decoder RNN
        dec_in = embedding_dim + (enc_out if self.feeds_context else 0)
        self.decoder = Recurrent(kind, dec_in, hidden_size, num_layers=num_layers, dropout=dropout)
        if attention == "bahdanau":
            self.attention: nn.Module | None = BahdanauAttention(hidden_size, enc_out, attn_size)
        elif attention.startswith("luong"):
            self.attention = LuongAttention(hidden_size, enc_out, attention.split("_", 1)[1])
        else:
            self.attention = None
        self.readout = nn.Linear(hidden_size + enc_out + (embedding_dim if self.feeds_context else 0), hidden_size)
        self.generator = nn.Linear(hidden_size, tgt_vocab_size)
        self.drop = nn.Dropout(dropout)

    # -- encoder ----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Sequence[int] | Tensor | None = None) -> tuple[Memory, State]:
        """``src (B, S)`` padded with ``pad_id`` -> (memory, initial decoder state). ``src_lengths``
        (on the CPU, e.g. a list from the collate function) saves reading the lengths off the device;
        without it they are counted from the padding."""
        mask = src != self.pad_id
        if src_lengths is None:
            lengths = mask.sum(1).clamp_min(1).cpu()
        else:
            lengths = torch.as_tensor(src_lengths, dtype=torch.long)
        keys, final = self.encoder(self.drop(self.src_embedding(src)), lengths=lengths)
        mask = mask[:, : keys.size(1)]
        h = final[0] if isinstance(final, tuple) else final
        L, dirs = self.encoder.num_layers, self.encoder.num_directions

        def per_layer(s: Tensor) -> Tensor:  # (L * dirs, B, H) -> (L, B, dirs * H)
            return s.view(L, dirs, s.size(1), s.size(2)).permute(0, 2, 1, 3).reshape(L, s.size(1), -1)

        hl = per_layer(h)
        state: State = torch.tanh(self.bridge(hl))
        if self.bridge_c is not None:
            state = (state, torch.tanh(self.bridge_c(per_layer(final[1]))))
        pre = self.attention.precompute(keys) if self.attention is not None else None
        return Memory(keys, pre, mask, hl[-1]), state

    # -- decoder ----------------------------------------------------------------------------
    def _top(self, state: State) -> Tensor:
        return (state[0] if isinstance(state, tuple) else state)[-1]

    def step(self, y_prev: Tensor, state: State, mem: Memory) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step: previous tokens ``(B,)`` -> (logits ``(B, V)``, state, attention ``(B, S)``)."""
        feats, state, weights = self._step_features(y_prev, state, mem)
        return self.generator(feats), state, weights

    def _step_features(self, y_prev: Tensor, state: State, mem: Memory) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step up to the generator: (its input ``(B, H)``, state, attention)."""
        e = self.drop(self.tgt_embedding(y_prev))
        weights = None
        if self.attention_kind == "bahdanau":
            ctx, weights = self.attention(self._top(state), mem.keys, mem.mask, mem.pre)
        elif self.attention_kind == "none":
            ctx = mem.summary
        x = torch.cat([e, ctx], -1) if self.feeds_context else e
        out, state = self.decoder(x.unsqueeze(1), state)
        s = out[:, 0]
        if self.attention_kind.startswith("luong"):
            ctx, weights = self.attention(s, mem.keys, mem.mask, mem.pre)
            feats = torch.cat([s, ctx], -1)
        else:
            feats = torch.cat([s, ctx, e], -1)
        return self.drop(torch.tanh(self.readout(feats))), state, weights

    def _parallel(self, tgt_in: Tensor, state: State, mem: Memory) -> tuple[Tensor, Tensor | None]:
        """All target steps at once (teacher forcing, no Bahdanau attention), up to the generator:
        (its input ``(B, T, H)``, attention)."""
        e = self.drop(self.tgt_embedding(tgt_in))
        T = tgt_in.size(1)
        weights = None
        if self.attention_kind == "none":
            ctx = mem.summary.unsqueeze(1).expand(-1, T, -1)
            out, _ = self.decoder(torch.cat([e, ctx], -1), state)
            feats = torch.cat([out, ctx, e], -1)
        else:
            out, _ = self.decoder(e, state)
            ctx, weights = self.attention(out, mem.keys, mem.mask, mem.pre)
            feats = torch.cat([out, ctx], -1)
        return self.drop(torch.tanh(self.readout(feats))), weights

    def forward(self, src: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0,
                parallel: bool = True, src_lengths: Sequence[int] | Tensor | None = None,
                targets: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
        """Logits ``(B, T, V)`` for decoder inputs ``tgt_in`` (``<bos> y_1 ... y_{T-1}``); with
        ``targets`` ``(B, T)``, the mean cross-entropy over their non-padding tokens instead (with
        ``label_smoothing``), as ``F.cross_entropy(logits.float(), targets, ignore_index=pad_id)``
        gives it: from a target vocabulary of ``seqgen.nets.losses.FUSED_MIN_CLASSES`` up, with teacher forcing, the
        generator and the loss are fused (:func:`~seqgen.nets.losses.linear_cross_entropy`).

        ``teacher_forcing`` < 1: at each step, each sentence is fed its gold previous token with
        that probability, else the model's own previous prediction (scheduled sampling)."""
        mem, state = self.encode(src, src_lengths)
        if teacher_forcing >= 1.0 and parallel and self.attention_kind != "bahdanau":
            feats, self.last_attention = self._parallel(tgt_in, state, mem)
            return self._output(feats, targets, label_smoothing)
        y = tgt_in[:, 0]
        outs, attn = [], []
        forced = teacher_forcing >= 1.0  # no step reads its own logits: the generator runs once, on all steps
        for t in range(tgt_in.size(1)):
            if forced:
                feats, state, w = self._step_features(y, state, mem)
                outs.append(feats)
            else:
                logits, state, w = self.step(y, state, mem)
                outs.append(logits)
            attn.append(w)
            if t + 1 < tgt_in.size(1):
                y = tgt_in[:, t + 1]
                if not forced:
                    gold = torch.rand(y.shape, device=y.device) < teacher_forcing
                    y = torch.where(gold, y, logits.argmax(-1))
        self.last_attention = torch.stack(attn, 1) if attn[0] is not None else None
        if forced:
            return self._output(torch.stack(outs, 1), targets, label_smoothing)
        logits = torch.stack(outs, 1)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=label_smoothing)

    def _output(self, feats: Tensor, targets: Tensor | None, label_smoothing: float) -> Tensor:
        """The generator's logits of ``feats`` ``(B, T, H)``, or with ``targets`` the loss."""
        if targets is None:
            return self.generator(feats)
        return layer_cross_entropy(feats.reshape(-1, feats.size(-1)), self.generator, targets.reshape(-1),
                                   ignore_index=self.pad_id, label_smoothing=label_smoothing)

    # -- scoring and decoding ---------------------------------------------------------------------
    def decode_limit(self, src: Tensor, max_len: int | None = None) -> int:
        limit = int(self.max_len_a * src.size(1) + self.max_len_b)
        return max(1, min(max_len or self.max_len, limit))

    @torch.no_grad()
    def score(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Sum of log-probabilities of each target ``(B, T)`` (``<bos> ... <eos>`` then padding)."""
        logits = self.forward(src, tgt[:, :-1])
        logp = torch.log_softmax(logits.float(), -1).gather(-1, tgt[:, 1:].unsqueeze(-1)).squeeze(-1)
        return logp.masked_fill(tgt[:, 1:] == self.pad_id, 0.0).sum(1)

    @torch.no_grad()
    def greedy(self, src: Tensor, max_len: int | None = None,
               return_attention: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        return self._greedy(src, *self.encode(src), max_len, return_attention)

    def _greedy(self, src: Tensor, mem: Memory, state: State, max_len: int | None,
                return_attention: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """Greedy decoding from an encoded source (``beam_search`` reuses its own encoding)."""
        B, L = src.size(0), self.decode_limit(src, max_len)
        y = torch.full((B,), self.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        scores = torch.zeros(B, device=src.device)
        tokens, attn = [], []
        for _ in range(L):
            logits, state, w = self.step(y, state, mem)
            logp = torch.log_softmax(logits.float(), -1)
            logp[:, [self.pad_id, self.bos_id]] = float("-inf")  # never emitted: padding, <bos>
            best, y = logp.max(-1)
            scores = scores + best.masked_fill(done, 0.0)
            y = y.masked_fill(done, self.pad_id)
            tokens.append(y)
            if return_attention and w is not None:
                attn.append(w.float())
            done = done | (y == self.eos_id)
            if done.all():
                break
        return torch.stack(tokens, 1), scores, (torch.stack(attn, 1) if attn else None)

    @torch.no_grad()
    def beam_search(self, src: Tensor, beam_size: int = 5, max_len: int | None = None, len_penalty: float = 0.6,
                    include_greedy: bool = True, return_attention: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Batched beam search; ``scores`` are the length-normalised log-probabilities of the winners."""
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ConfigError(f"beam_size must be a positive integer, got {beam_size!r}")
        B, K, V = src.size(0), beam_size, self.tgt_vocab_size
        L = self.decode_limit(src, max_len)
        dev = src.device
        enc_mem, enc_state = self.encode(src)
        rows = torch.arange(B, device=dev).repeat_interleave(K)
        mem, state = enc_mem.select(rows), select_state(enc_state, rows)
        scores = torch.full((B, K), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        scores = scores.view(-1)
        y = torch.full((B * K,), self.bos_id, dtype=torch.long, device=dev)
        done = torch.zeros(B * K, dtype=torch.bool, device=dev)
        lengths = torch.zeros(B * K, dtype=torch.long, device=dev)
        tokens = torch.empty(B * K, 0, dtype=torch.long, device=dev)
        attn = torch.empty(B * K, 0, mem.keys.size(1), device=dev) if return_attention else None
        base = (torch.arange(B, device=dev) * K).unsqueeze(1)
        for _ in range(L):
            logits, state, w = self.step(y, state, mem)
            logp = torch.log_softmax(logits.float(), -1)
            logp[:, [self.pad_id, self.bos_id]] = float("-inf")  # never emitted: padding, <bos>
            logp[done] = float("-inf")
            logp[done, self.pad_id] = 0.0  # a finished hypothesis only extends with padding, at no cost
            top, idx = (scores.unsqueeze(1) + logp).view(B, K * V).topk(K, dim=1)
            src_rows = (base + idx // V).view(-1)
            y = (idx % V).view(-1)
            scores = top.view(-1)
            was_done = done.index_select(0, src_rows)
            lengths = lengths.index_select(0, src_rows) + (~was_done).long()
            done = was_done | (y == self.eos_id)
            tokens = torch.cat([tokens.index_select(0, src_rows), y.unsqueeze(1)], 1)
            state = select_state(state, src_rows)
            if attn is not None:
                step_w = w.float() if w is not None else torch.zeros(B * K, attn.size(2), device=dev)
                attn = torch.cat([attn.index_select(0, src_rows), step_w.index_select(0, src_rows).unsqueeze(1)], 1)
            if done.all():
                break
        norm = (scores / length_penalty(lengths, len_penalty)).view(B, K)
        best_score, best = norm.max(1)
        pick = base.view(-1) + best
        out_tokens, out_attn = tokens.index_select(0, pick), attn.index_select(0, pick) if attn is not None else None
        if include_greedy:
            g_tokens, g_scores, g_attn = self._greedy(src, enc_mem, enc_state, max_len, return_attention)
            g_len = ((g_tokens != self.pad_id).sum(1)).clamp_min(1)
            g_norm = g_scores / length_penalty(g_len, len_penalty)
            better = g_norm > best_score
            if better.any():
                out_tokens, out_attn = _pick_rows(out_tokens, g_tokens, better, self.pad_id), \
                    (_pick_rows(out_attn, g_attn, better, 0.0) if out_attn is not None and g_attn is not None else out_attn)
                best_score = torch.where(better, g_norm, best_score)
        return out_tokens, best_score, out_attn


def _pick_rows(a: Tensor, b: Tensor, take_b: Tensor, pad: float) -> Tensor:
    """Rows of ``a``, replaced by the rows of ``b`` where ``take_b``; padded to the longer length."""
    T = max(a.size(1), b.size(1))
    a = F.pad(a, (0, 0) * (a.dim() - 2) + (0, T - a.size(1)), value=pad)
    b = F.pad(b, (0, 0) * (b.dim() - 2) + (0, T - b.size(1)), value=pad)
    shape = (-1,) + (1,) * (a.dim() - 1)
    return torch.where(take_b.view(shape), b, a)
