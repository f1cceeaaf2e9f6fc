"""Recurrent networks: cells written from their equations, and stacks with two implementations.

Cells (one time step, the textbook equations; gate order as in ``torch.nn`` so weights match)::

    RNN : h' = tanh(W_ih x + b_ih + W_hh h + b_hh)                       (or ReLU)
    LSTM: i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
    GRU : r, z = sigmoid(split(W_ir x + b_ir + W_hr h + b_hr)),
          n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

Stacks (:class:`RNN`, :class:`LSTM`, :class:`GRU`, or :class:`Recurrent` with ``kind=``) keep
their parameters in a ``torch.nn.RNN/LSTM/GRU`` module, so the state dict is the same for both
``impl="fused"`` (the torch kernel: oneDNN on CPU, cuDNN on GPU) and ``impl="cells"`` (the
equations above, one step at a time, in plain torch): weights trained with one load into the other.
Both accept ``lengths`` for variable-length, right-padded batches: padded steps neither change
the state nor produce output (zeros), exactly like packed sequences.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqgen.errors import ConfigError
from seqgen.nets.hardware import cpu_has_bf16

State = Union[Tensor, tuple[Tensor, Tensor]]
KINDS = ("rnn", "rnn_relu", "lstm", "gru")
IMPLS = ("fused", "cells")


# --------------------------------------------------------------------------- cell equations
def rnn_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """One vanilla RNN step; ``gi = W_ih x + b_ih`` is precomputed for all steps at once."""
    pre = gi + F.linear(h, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(gi: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    gates = gi + F.linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


class _CellBase(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ConfigError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(g)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.hidden_size**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _gi(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)


class RNNCell(_CellBase):
    """Elman cell ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with ``nonlinearity`` tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.size(0), self.hidden_size)
        return rnn_step(self._gi(x), h, self.weight_hh, self.bias_hh, self.nonlinearity)


class LSTMCell(_CellBase):
    """LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate, Gers et al. 2000).

    ``forget_bias`` is added to the forget-gate bias at initialisation (Jozefowicz et al. 2015
    recommend 1.0) so that early in training the cell remembers by default.
    """

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, forget_bias: float = 0.0):
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_ih is not None and self.forget_bias:
            with torch.no_grad():
                self.bias_ih[self.hidden_size : 2 * self.hidden_size] += self.forget_bias

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            z = x.new_zeros(x.size(0), self.hidden_size)
            state = (z, z)
        return lstm_step(self._gi(x), state[0], state[1], self.weight_hh, self.bias_hh)


class GRUCell(_CellBase):
    """GRU cell (Cho et al. 2014) with reset gate applied after the hidden matmul, as cuDNN does."""

    gates = 3

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.size(0), self.hidden_size)
        return gru_step(self._gi(x), h, self.weight_hh, self.bias_hh)


# --------------------------------------------------------------------------- stacks
def _reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each (B, T, ...) sequence within its own length (padding stays at the end)."""
    if lengths is None:
        return x.flip(1)
    T = x.size(1)
    t = torch.arange(T, device=x.device).unsqueeze(0)
    lens = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < lens, lens - 1 - t, t)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class Recurrent(nn.Module):
    """A stack of recurrent layers: ``kind`` in rnn | rnn_relu | lstm | gru, ``impl`` fused | cells.

    Shapes follow ``torch.nn.LSTM``: input ``(B, T, F)`` with ``batch_first=True`` (default here)
    or ``(T, B, F)``; state ``(layers * directions, B, H)`` (a pair for LSTM).
    ``forward(x, state=None, lengths=None) -> (output, final_state)``.
    """

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = True,
        bias: bool = True,
        impl: str = "fused",
        forget_bias: float = 0.0,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown recurrent kind {kind!r}; available: {', '.join(KINDS)}")
        if impl not in IMPLS:
            raise ConfigError(f"unknown impl {impl!r}; available: {', '.join(IMPLS)}")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.kind, self.impl = kind, impl
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.batch_first, self.dropout = bidirectional, batch_first, dropout
        self.num_directions = 2 if bidirectional else 1
        common = dict(num_layers=num_layers, bias=bias, batch_first=True, dropout=dropout if num_layers > 1 else 0.0,
                      bidirectional=bidirectional)
        if kind == "lstm":
            self.rnn: nn.RNNBase = nn.LSTM(input_size, hidden_size, **common)
        elif kind == "gru":
            self.rnn = nn.GRU(input_size, hidden_size, **common)
        else:
            self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="relu" if kind == "rnn_relu" else "tanh", **common)
        if forget_bias and kind == "lstm":
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        p[hidden_size : 2 * hidden_size] += forget_bias

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def init_state(self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        p = next(self.parameters())
        z = torch.zeros(self.num_layers * self.num_directions, batch_size, self.hidden_size,
                        device=device or p.device, dtype=dtype or p.dtype)
        return (z, z.clone()) if self.kind == "lstm" else z

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.impl == "fused":
            out, state = self._fused(x, state, lengths)
        else:
            out, state = self._cells(x, state, lengths)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, state

    # -- fused: torch's kernels (packed when lengths are given)
    def _fused(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        if self.kind == "lstm" and x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not cpu_has_bf16():
            # oneDNN has no bf16 LSTM on a CPU without avx512_bf16 ("could not create a primitive descriptor"):
            # autocast would hand it bf16; run it in fp32, as autocast does with ops it has no low-precision form of
            with torch.autocast("cpu", enabled=False):
                state = None if state is None else tuple(s.float() for s in state)
                return self._fused(x.float(), state, lengths)
        if lengths is None:
            return self.rnn(x, state)
        T = x.size(1)
        lengths = lengths if lengths.device.type == "cpu" else lengths.cpu()  # packing reads them on the CPU
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return out, state

    # -- cells: the equations, one step at a time
    def _cells(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        is_lstm = self.kind == "lstm"
        h0, c0 = state if is_lstm else (state, None)
        mask = None
        if lengths is not None:
            mask = (torch.arange(T, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).to(x.dtype)
        h_out, c_out = [], []
        layer_in = x
        for layer in range(self.num_layers):
            dir_outputs = []
            for d in range(self.num_directions):
                idx = layer * self.num_directions + d
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                w_ih, w_hh = getattr(self.rnn, "weight_ih" + sfx), getattr(self.rnn, "weight_hh" + sfx)
                b_ih = getattr(self.rnn, "bias_ih" + sfx, None)
                b_hh = getattr(self.rnn, "bias_hh" + sfx, None)
                inp = _reverse_padded(layer_in, lengths) if d == 1 else layer_in
                gi = F.linear(inp, w_ih, b_ih)  # all time steps at once
                h = h0[idx]
                c = c0[idx] if is_lstm else None
                outs = []
                for t in range(T):
                    if is_lstm:
                        h_new, c_new = lstm_step(gi[:, t], h, c, w_hh, b_hh)
                    elif self.kind == "gru":
                        h_new, c_new = gru_step(gi[:, t], h, w_hh, b_hh), None
                    else:
                        nl = "relu" if self.kind == "rnn_relu" else "tanh"
                        h_new, c_new = rnn_step(gi[:, t], h, w_hh, b_hh, nl), None
                    if mask is not None:
                        m = mask[:, t : t + 1]
                        h = m * h_new + (1 - m) * h
                        if is_lstm:
                            c = m * c_new + (1 - m) * c
                        outs.append(h_new * m)
                    else:
                        h, c = h_new, c_new
                        outs.append(h)
                seq = torch.stack(outs, 1)
                if d == 1:
                    seq = _reverse_padded(seq, lengths)
                dir_outputs.append(seq)
                h_out.append(h)
                if is_lstm:
                    c_out.append(c)
            layer_in = torch.cat(dir_outputs, -1) if self.num_directions == 2 else dir_outputs[0]
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        h_n = torch.stack(h_out, 0)
        final: State = (h_n, torch.stack(c_out, 0)) if is_lstm else h_n
        return layer_in, final


class RNN(Recurrent):
    """Vanilla (Elman) RNN stack; ``nonlinearity`` tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("rnn" if nonlinearity == "tanh" else "rnn_relu", input_size, hidden_size, **kw)


class LSTM(Recurrent):
    def __init__(self, input_size: int, hidden_size: int, **kw):
        super().__init__("lstm", input_size, hidden_size, **kw)


class GRU(Recurrent):
    def __init__(self, input_size: int, hidden_size: int, **kw):
        super().__init__("gru", input_size, hidden_size, **kw)


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a truncated-BPTT boundary (``repackage_hidden`` in pytorch/examples)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)
