"""What the machine computes natively, for choices that depend on it (plain torch)."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU runs oneDNN's bfloat16 kernels (AVX512-BF16 or AMX). Without them bf16 is
    emulated, several times slower than fp32, and torch's LSTM under CPU bf16 autocast fails."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch without the probe
        return False


def auto_precision(accelerator: str | None = "auto") -> str:
    """``bf16-mixed`` where ``accelerator`` computes in bfloat16 natively (a CUDA GPU that supports
    it, a CPU with AVX512-BF16 or AMX), ``32-true`` elsewhere."""
    acc = str(accelerator or "auto").lower()
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if acc in ("cpu", "auto"):
        return "bf16-mixed" if cpu_has_bf16() else "32-true"
    return "32-true"  # mps, tpu, ...: left to an explicit choice
