"""Linear layer + softmax cross-entropy in one pass over row chunks (a language model's decoder and loss).

A word LM spends much of its step on ``F.cross_entropy(decoder(h).float(), y)``: the (N, V) logits
are written, cast to fp32 under autocast, read by ``log_softmax``, written again, and in backward a
zeroed (N, V) gradient is filled, ``log_softmax_backward`` reads two (N, V) tensors and the result
is cast back. On a 700 x 7,702 batch (Multi30k English, bptt 35, batch 20) that is over a hundred
megabytes of memory traffic around three matmuls that AMX finishes in about 4.5 ms under bf16.

:func:`linear_cross_entropy` computes the logits ``chunk_rows`` rows at a time, takes the fp32
log-softmax of each chunk while it is in cache, and writes the gradient of the logits
(``softmax - onehot``, in the matmul dtype) straight away, so backward is two matmuls. The result
is the mean token NLL in fp32, equal to ``F.cross_entropy(F.linear(h, weight, bias).float(), target)``
to fp32 rounding (and, under bf16 autocast, to that path's bf16 rounding).

Why it is written here: the maintained fused linear-cross-entropy kernels (Liger-Kernel,
Apple's cut-cross-entropy) are Triton kernels for GPUs; nothing maintained does this on a CPU. This
is plain torch ops, so it runs on any device and under autocast (bf16 or fp16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError

# benchmarks/lm_loss.py: the fused loss is 1.1-2.3x from 2,000 classes up, 0.8-1.0x at 100 (a char LM)
FUSED_MIN_CLASSES = 1024


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, chunk_rows: int,
                need_grad: bool, ignore_index: int | None, smoothing: float) -> Tensor:  # noqa: D102
        dev = h.device.type
        cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
        with torch.autocast(dev, enabled=False):
            hc, wc = h.to(cdt), weight.to(cdt)
            bc = None if bias is None else bias.to(cdt)
            n, v = hc.size(0), wc.size(0)
            if ignore_index is not None:
                valid = target != ignore_index
                target = torch.where(valid, target, torch.zeros_like(target))  # any class: its row is masked
                count = valid.sum().float()  # no host sync: the mean's divisor stays a tensor
            else:
                valid, count = None, torch.tensor(float(n), device=h.device)
            grad_logits = torch.empty(n, v, dtype=cdt, device=h.device) if need_grad else None
            grad_bias = torch.zeros(v, dtype=torch.float32, device=h.device) if need_grad and bias is not None else None
            losses = torch.empty(n, dtype=torch.float32, device=h.device)
            wt = wc.t()
            onehot = None
            for s in range(0, n, chunk_rows):
                e = min(n, s + chunk_rows)
                z = hc[s:e] @ wt if bc is None else torch.addmm(bc, hc[s:e], wt)
                logp = torch.log_softmax(z, 1, dtype=torch.float32)
                t = target[s:e, None]
                row = logp.gather(1, t).squeeze(1).neg_()
                if smoothing:  # as F.cross_entropy: (1 - eps) * NLL + eps * mean over classes of -log p
                    row = row.mul_(1.0 - smoothing).sub_(logp.mean(1), alpha=smoothing)
                if valid is not None:
                    row = row.mul_(valid[s:e])
                losses[s:e] = row
                if need_grad:
                    p = logp.exp_()  # softmax, in place
                    if onehot is None or onehot.size(0) != e - s:
                        onehot = torch.full((e - s, 1), smoothing - 1.0, device=h.device)
                    p.scatter_add_(1, t, onehot)  # softmax - (1 - eps) onehot - eps / V: d(row loss)/d(logits)
                    if smoothing:
                        p.sub_(smoothing / v)
                    if valid is not None:
                        p.mul_(valid[s:e, None])
                    grad_logits[s:e] = p
                    if grad_bias is not None:
                        grad_bias += p.sum(0)
            loss = losses.sum() / count
        ctx.save_for_backward(hc, wc, grad_logits, grad_bias, count)
        ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        hc, wc, grad_logits, grad_bias, count = ctx.saved_tensors
        scale = grad / count  # d(mean)/d(sum), times the incoming gradient
        gh = gw = gb = None
        if ctx.needs_input_grad[0]:
            gh = (grad_logits @ wc).to(ctx.dtypes[0]).mul_(scale)
        if ctx.needs_input_grad[1]:
            gw = (grad_logits.t() @ hc).to(ctx.dtypes[1]).mul_(scale)
        if ctx.needs_input_grad[2]:
            gb = (grad_bias * scale).to(ctx.dtypes[2])
        return gh, gw, gb, None, None, None, None, None


@torch.compiler.disable  # a Python loop over chunks: run eagerly inside a compiled net
def linear_cross_entropy(h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, chunk_rows: int | None = None,
                         ignore_index: int | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Mean NLL of ``target`` (N,) under ``softmax(h @ weight.T + bias)``; ``h`` (N, H), ``weight`` (V, H).

    Same value and gradients as ``F.cross_entropy(F.linear(h, weight, bias).float(), target,
    ignore_index=ignore_index, label_smoothing=label_smoothing)`` without materialising fp32
    logits: see the module docstring. Targets other than ``ignore_index`` must be class indices in
    ``[0, V)``; the mean is over them (NaN when there is none, as ``F.cross_entropy``'s).
    ``chunk_rows`` defaults to ``max(128, 2**20 // V)``: chunks of about a million logits, and no
    fewer than 128 rows, below which the matmuls lost efficiency on the CPU it was measured on (AMX).
    """
    if chunk_rows is None:
        chunk_rows = max(128, 2**20 // max(1, weight.size(0)))
    if h.dim() != 2 or target.shape != h.shape[:1]:
        raise ConfigError(f"linear_cross_entropy wants h (N, H) and target (N,), got {tuple(h.shape)} and {tuple(target.shape)}")
    if not isinstance(chunk_rows, int) or chunk_rows <= 0:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ConfigError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    # under no_grad (evaluation) the logits' gradient is not written at all
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (h, weight, bias))
    return _LinearCrossEntropy.apply(h, weight, bias, target, chunk_rows, need_grad, ignore_index, float(label_smoothing))


def layer_cross_entropy(h: Tensor, layer: nn.Linear, target: Tensor, ignore_index: int | None = None,
                        label_smoothing: float = 0.0) -> Tensor:
    """``F.cross_entropy(layer(h).float(), target, ...)`` for ``h`` (N, H), ``target`` (N,): fused
    (:func:`linear_cross_entropy`) from ``FUSED_MIN_CLASSES`` outputs up, the logits' below, where
    that is as fast or faster. The output layer and loss of RNNLM and Seq2Seq."""
    if layer.out_features >= FUSED_MIN_CLASSES:
        return linear_cross_entropy(h, layer.weight, layer.bias, target, ignore_index=ignore_index,
                                    label_smoothing=label_smoothing)
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    return F.cross_entropy(layer(h).float(), target, label_smoothing=label_smoothing, **kw)
