#!/usr/bin/env python
"""A language model's decoder + loss, forward and backward: the classic full logits +
``F.cross_entropy`` against seqgen's fused ``linear_cross_entropy``, fp32 and under bf16 autocast.

Rows: a char LM (3,200 positions, 2x512 LSTM output, 100 symbols), the Multi30k word LM (700 x 200 ->
7,702 words), a 2,000-word vocabulary, WikiText-2's 33,278 words. Milliseconds per call (median of
three alternated blocks of ``--reps`` calls), and the speed-up.

    python benchmarks/lm_loss.py [--reps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import machine, table

from seqgen.nets.hardware import cpu_has_bf16
from seqgen.nets.losses import linear_cross_entropy

SHAPES = [("char LM", 3200, 512, 100), ("word LM, 2,000 words", 700, 200, 2000),
          ("Multi30k word LM", 700, 200, 7702), ("WikiText-2 word LM", 700, 200, 33278)]


def time_calls(n: int, h: int, v: int, bf16: bool, reps: int, rounds: int = 3) -> tuple[float, float]:
    """Milliseconds per call, classic and fused: ``rounds`` alternated blocks of ``reps`` calls each
    (each block in the steady state of its own allocations), the median of the block medians."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) * 0.1).requires_grad_()
    b = torch.zeros(v, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)

    def block(fused: bool) -> float:
        times = []
        for i in range(reps + 3):  # three warm-up calls
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = linear_cross_entropy(x, w, b, t) if fused else F.cross_entropy(F.linear(x, w, b).float(), t)
            loss.backward()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    blocks = [(block(False), block(True)) for _ in range(rounds)]
    return tuple(1000 * statistics.median(c) for c in zip(*blocks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for name, n, h, v in SHAPES:
        for bf16 in (False, True):
            classic, fused = time_calls(n, h, v, bf16, args.reps)
            rows.append([f"{name} ({n} x {h} -> {v})", "bf16-mixed" if bf16 else "fp32", round(classic, 2), round(fused, 2),
                         round(classic / fused, 2)])
    note = "" if cpu_has_bf16() else "; no bf16 units on this CPU: its bf16 rows are emulated"
    table(f"LM decoder + loss, forward and backward, ms per call ({machine()}{note})",
          ["shape", "precision", "logits + F.cross_entropy", "linear_cross_entropy", "speed-up"], rows)


if __name__ == "__main__":
    main()
