"""Cells written from the equations equal torch's fused kernels; truncated BPTT carries state
across chunks and no gradient crosses the detach point."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from seqgen.errors import ConfigError
from seqgen.nets import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell, detach_state

KINDS = ["rnn", "rnn_relu", "lstm", "gru"]


def _pair(kind, layers, bidirectional, seed=0):
    torch.manual_seed(seed)
    fused = Recurrent(kind, 5, 7, num_layers=layers, bidirectional=bidirectional, impl="fused").double()
    cells = Recurrent(kind, 5, 7, num_layers=layers, bidirectional=bidirectional, impl="cells").double()
    cells.load_state_dict(fused.state_dict())  # same parameter layout
    return fused, cells


def _state(kind, layers, dirs, B, gen):
    h = torch.randn(layers * dirs, B, 7, dtype=torch.float64, generator=gen)
    if kind == "lstm":
        return (h, torch.randn(layers * dirs, B, 7, dtype=torch.float64, generator=gen))
    return h


def _flat(state):
    return torch.cat([s.reshape(-1) for s in state]) if isinstance(state, tuple) else state.reshape(-1)


@pytest.mark.parametrize("kind,layers,bidirectional,with_state,with_lengths",
                         [(k, n, b, s, ln) for k, n, b, s, ln in itertools.product(KINDS, [1, 2, 3], [False, True], [False, True], [False, True])])
def test_cells_equal_fused(kind, layers, bidirectional, with_state, with_lengths):
    fused, cells = _pair(kind, layers, bidirectional)
    gen = torch.Generator().manual_seed(1)
    B, T = 4, 6
    x = torch.randn(B, T, 5, dtype=torch.float64, generator=gen)
    dirs = 2 if bidirectional else 1
    state = _state(kind, layers, dirs, B, gen) if with_state else None
    lengths = torch.tensor([6, 3, 1, 5]) if with_lengths else None
    outs, grads = [], []
    for net in (fused, cells):
        xi = x.clone().requires_grad_(True)
        leaves = [] if state is None else [t.clone().requires_grad_(True) for t in (state if isinstance(state, tuple) else (state,))]
        si = None if state is None else tuple(leaves) if isinstance(state, tuple) else leaves[0]
        out, final = net(xi, si, lengths=lengths)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum() + _flat(final).pow(2).sum()
        loss.backward()
        outs.append((out.detach(), _flat(final).detach()))
        grads.append([xi.grad] + [p.grad for p in net.parameters()] + [t.grad for t in leaves])
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=1e-10, rtol=1e-8)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    if with_lengths:  # padded positions give zero output, like packed sequences
        assert outs[1][0][2, 1:].abs().max() == 0


def test_time_major_layout():
    fused, cells = _pair("gru", 2, True)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    fused.batch_first = cells.batch_first = False
    torch.testing.assert_close(fused(x)[0], cells(x)[0])
    assert fused(x)[0].shape == (6, 3, 14)


@pytest.mark.parametrize("cell_cls,torch_cls,kw", [(RNNCell, nn.RNNCell, {}), (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
                                                   (LSTMCell, nn.LSTMCell, {}), (GRUCell, nn.GRUCell, {})])
def test_single_cells_match_torch(cell_cls, torch_cls, kw):
    torch.manual_seed(0)
    ours, ref = cell_cls(5, 7, **kw).double(), torch_cls(5, 7, **kw).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64)
    if cell_cls is LSTMCell:
        s = (torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64))
        torch.testing.assert_close(torch.stack(ours(x, s)), torch.stack(ref(x, s)))
    else:
        h = torch.randn(3, 7, dtype=torch.float64)
        torch.testing.assert_close(ours(x, h), ref(x, h))


def test_lstm_forget_bias_init():
    cell = LSTMCell(4, 6, forget_bias=1.0)
    stack = LSTM(4, 6, forget_bias=1.0)
    ref = LSTM(4, 6)
    # bias_ih forget slice is shifted by +1 relative to the U(-1/sqrt(H), 1/sqrt(H)) range
    assert cell.bias_ih[6:12].min() > 1.0 - 6**-0.5 - 1e-6
    assert stack.rnn.bias_ih_l0[6:12].min() > 1.0 - 6**-0.5 - 1e-6
    assert ref.rnn.bias_ih_l0[6:12].max() <= 6**-0.5 + 1e-6


def test_named_stacks_and_errors():
    assert RNN(3, 4).kind == "rnn" and RNN(3, 4, nonlinearity="relu").kind == "rnn_relu"
    assert GRU(3, 4, num_layers=2).rnn.num_layers == 2
    with pytest.raises(ConfigError, match="available: rnn, rnn_relu, lstm, gru"):
        Recurrent("transformer", 3, 4)
    with pytest.raises(ConfigError, match="impl"):
        Recurrent("lstm", 3, 4, impl="cuda")
    with pytest.raises(ConfigError, match="hidden_size"):
        LSTM(3, 0)
    with pytest.raises(ConfigError, match="dropout"):
        LSTM(3, 4, dropout=1.5)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    net = Recurrent("lstm", 4, 8, num_layers=2, dropout=0.5, impl="cells")
    x = torch.randn(2, 5, 4)
    net.eval()
    a, b = net(x)[0], net(x)[0]
    torch.testing.assert_close(a, b)
    net.train()
    assert not torch.allclose(net(x)[0], net(x)[0])


@pytest.mark.parametrize("impl", ["fused", "cells"])
def test_truncated_bptt_carries_state_but_not_gradient(impl):
    """Chunk k's output depends on chunk k-1's input through the carried state (forward), but
    after detach_state no gradient reaches chunk k-1's input (backward)."""
    torch.manual_seed(0)
    net = Recurrent("lstm", 3, 8, impl=impl).double()
    prev = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    cur = torch.randn(2, 5, 3, dtype=torch.float64)
    _, state = net(prev)
    carried = detach_state(state)
    out_carried, _ = net(cur, carried)
    out_reset, _ = net(cur, None)
    assert (out_carried[:, 0] - out_reset[:, 0]).abs().max() > 1e-4, "state was not carried"
    out_carried.sum().backward()
    assert prev.grad is None, "gradient crossed the truncation point"
    # without the detach, the gradient does reach the previous chunk
    out_attached, _ = net(cur, state)
    out_attached.sum().backward()
    assert prev.grad is not None and prev.grad.abs().sum() > 0


def test_lstm_runs_under_cpu_bf16_autocast_on_any_cpu():
    """torch's LSTM under CPU bf16 autocast needs oneDNN's bf16 kernels (avx512_bf16); without them it
    fails with 'could not create a primitive descriptor'. seqgen runs it in fp32 there: the result
    matches fp32 to bf16 rounding on any CPU, and the carried state goes on to the next chunk."""
    from seqgen.nets import RNNLM

    torch.manual_seed(0)
    net = RNNLM(vocab_size=50, kind="lstm", hidden_size=32, num_layers=2, embedding_dim=16)
    x = torch.randint(0, 50, (4, 12))
    ref, ref_state = net(x)
    ref2, _ = net(x, ref_state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = net(x)
        out2, _ = net(x, state)
    assert torch.allclose(out.float(), ref, atol=0.05) and torch.allclose(out2.float(), ref2, atol=0.05)
