"""The fused decoder + cross-entropy (seqgen.nets.losses.linear_cross_entropy) against the classic
full-logits path: same value and gradients in fp32 whatever the chunking, bf16 autocast within bf16
rounding, and the LanguageModel / RNNLM wiring on both paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqgen.errors import ConfigError
from seqgen.nets import RNNLM
from seqgen.nets.losses import FUSED_MIN_CLASSES, linear_cross_entropy


def _inputs(n=37, h=24, v=101, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.3).requires_grad_() if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    return x, w, b, t


def _loss_and_grads(fn, x, w, b, t, autocast=False):
    for p in (x, w, b):
        if p is not None:
            p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = fn(x, w, b, t)
    (loss * 3.0).backward()  # an incoming gradient other than 1 must scale every gradient
    return [loss.detach()] + [p.grad.clone() for p in (x, w, b) if p is not None]


def _classic(x, w, b, t):
    return F.cross_entropy(F.linear(x, w, b).float(), t)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 5, 37, 128])
def test_fp32_equals_full_logits_cross_entropy(bias, chunk_rows):
    x, w, b, t = _inputs(bias=bias)
    ref = _loss_and_grads(_classic, x, w, b, t)
    got = _loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk_rows=chunk_rows), x, w, b, t)
    assert got[0].dtype == torch.float32
    for r, g in zip(ref, got):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-6), (r - g).abs().max()


@pytest.mark.parametrize("ignore_index", [None, 0, -100])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fp32_padding_and_label_smoothing_equal_f_cross_entropy(ignore_index, smoothing):
    """A translator's loss: padding targets ignored (the mean over the others) and label smoothing,
    value and gradients as F.cross_entropy gives them."""
    x, w, b, t = _inputs(n=41)
    if ignore_index is not None:
        t = t.clone()
        t[::3] = ignore_index  # a third of the rows are padding
    kw = {"label_smoothing": smoothing} | ({} if ignore_index is None else {"ignore_index": ignore_index})
    ref = _loss_and_grads(lambda *a: F.cross_entropy(F.linear(*a[:3]).float(), a[3], **kw), x, w, b, t)
    got = _loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk_rows=7, **kw), x, w, b, t)
    for r, g in zip(ref, got):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-6), (r - g).abs().max()


def test_bf16_autocast_is_within_bf16_rounding_of_fp32():
    """Under bf16 autocast the matmuls run in bf16 and the softmax in fp32, as the classic autocast
    path: both land within bf16 rounding of fp32, and the fused one is no further off than it."""
    x, w, b, t = _inputs(n=200, h=64, v=500)
    exact = _loss_and_grads(_classic, x, w, b, t)
    classic = _loss_and_grads(_classic, x, w, b, t, autocast=True)
    fused = _loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk_rows=64), x, w, b, t, autocast=True)
    assert fused[0].dtype == torch.float32
    for e, c, f in zip(exact, classic, fused):
        err_f = float((f.float() - e).abs().max() / e.abs().max())
        err_c = float((c.float() - e).abs().max() / e.abs().max())
        assert err_f < 2e-2 and err_f <= 2 * err_c + 1e-3, (err_f, err_c)
    assert [g.dtype for g in fused[1:]] == [torch.float32] * 3  # gradients of fp32 leaves stay fp32


def test_no_grad_gives_the_same_loss():
    x, w, b, t = _inputs()
    with torch.no_grad():
        loss = linear_cross_entropy(x, w, b, t, chunk_rows=8)
    assert not loss.requires_grad
    assert torch.allclose(loss, _classic(x, w, b, t).detach(), rtol=1e-6)


def test_bad_arguments_are_refused():
    x, w, b, t = _inputs()
    with pytest.raises(ConfigError, match="chunk_rows"):
        linear_cross_entropy(x, w, b, t, chunk_rows=0)
    with pytest.raises(ConfigError, match=r"target \(N,\)"):
        linear_cross_entropy(x, w, b, t[:-1])
    with pytest.raises(ConfigError, match="label_smoothing"):
        linear_cross_entropy(x, w, b, t, label_smoothing=1.5)


@pytest.mark.parametrize("vocab", [60, FUSED_MIN_CLASSES + 100])  # logits' cross-entropy, fused
@pytest.mark.parametrize("tie_weights", [True, False])
def test_rnnlm_targets_path_equals_logits_path(tie_weights, vocab):
    """RNNLM(tokens, state, targets=y) is the logits path's mean NLL, dropout masks included (the
    same draws in the same order), with the same gradients and the same carried state."""
    torch.manual_seed(3)
    net = RNNLM(vocab_size=vocab, embedding_dim=16, hidden_size=16, num_layers=2, dropout=0.3, tie_weights=tie_weights)
    x, y = torch.randint(0, vocab, (4, 9)), torch.randint(0, vocab, (4, 9))
    results = []
    for fused in (False, True):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        if fused:
            loss, state = net(x, targets=y)
        else:
            logits, state = net(x)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        results.append((loss.detach(), state, {n: p.grad.clone() for n, p in net.named_parameters()}))
    (l0, s0, g0), (l1, s1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(s0, s1))
    assert g0.keys() == g1.keys()
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-5, atol=1e-7), n


def test_language_model_uses_the_fused_loss_and_still_takes_logits_nets():
    """LanguageModel passes targets to a net whose forward takes them (RNNLM) and computes the
    cross-entropy itself for any other net: the same loss either way."""
    from seqgen.models import LanguageModel

    class LogitsOnly(torch.nn.Module):  # a user's net: forward(tokens, state) -> (logits, state)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, tokens, state=None):
            return self.inner(tokens, state)

    torch.manual_seed(0)
    net = RNNLM(vocab_size=30, embedding_dim=8, hidden_size=8, num_layers=1)
    fused = LanguageModel(vocab_size=30, net=net, level="word")
    plain = LanguageModel(vocab_size=30, net=LogitsOnly(net), level="word")
    assert fused._net_takes_targets and not plain._net_takes_targets
    batch = (torch.randint(0, 30, (3, 7)), torch.randint(0, 30, (3, 7)))
    a, b = fused._loss("val", batch), plain._loss("val", batch)
    assert torch.allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general", "none"])
@pytest.mark.parametrize("vocab", [40, FUSED_MIN_CLASSES + 76])  # below and above the fused-loss threshold
@pytest.mark.parametrize("teacher_forcing", [1.0, 0.5])
def test_seq2seq_targets_path_equals_logits_path(attention, vocab, teacher_forcing):
    """Seq2Seq(src, tgt_in, targets=y, label_smoothing=0.1) is F.cross_entropy of its logits with the
    padding ignored, dropout masks and scheduled-sampling draws included, with the same gradients."""
    from seqgen.nets import Seq2Seq

    torch.manual_seed(5)
    net = Seq2Seq(30, vocab, 12, 16, attention=attention, dropout=0.2)
    src = torch.randint(4, 30, (3, 7))
    tgt = torch.randint(4, vocab, (3, 6))
    tgt[0, 4:] = 0  # padding: ignored
    results = []
    for fused in (False, True):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(17)
        if fused:
            loss = net(src, tgt[:, :-1], teacher_forcing=teacher_forcing, targets=tgt[:, 1:], label_smoothing=0.1)
        else:
            logits = net(src, tgt[:, :-1], teacher_forcing=teacher_forcing)
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), tgt[:, 1:].reshape(-1), ignore_index=0,
                                   label_smoothing=0.1)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-6), (l0, l1)
    assert g0.keys() == g1.keys()
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-5, atol=1e-7), n
