#!/usr/bin/env python
"""Tokens/s (forward + backward) of the recurrent stacks: fused torch kernels vs the cells
written from the equations, at a PTB-like size (2 layers, 650 units, bptt 35, batch 20).

    python benchmarks/recurrent_speed.py [--hidden 650] [--iters 20] [--compile] [--precisions fp32 bf16]

``--compile`` also times ``torch.compile`` of the cells implementation (slow to compile).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, table

from seqgen.nets import Recurrent


def tokens_per_sec(net, x, iters: int, bf16: bool) -> float:
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = net(x)
        out.float().sum().backward()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * x.size(0) * x.size(1) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=650)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--kinds", nargs="+", default=["rnn", "lstm", "gru"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.bptt, args.hidden)
    rows = []
    for prec in args.precisions:
        for kind in args.kinds:
            fused = Recurrent(kind, args.hidden, args.hidden, num_layers=args.layers, impl="fused")
            cells = Recurrent(kind, args.hidden, args.hidden, num_layers=args.layers, impl="cells")
            cells.load_state_dict(fused.state_dict())
            bf16 = prec == "bf16"
            f = tokens_per_sec(fused, x, args.iters, bf16)
            c = tokens_per_sec(cells, x, args.iters, bf16)
            row = [kind, prec, round(f), round(c), round(f / c, 2)]
            if args.compile:
                comp = torch.compile(cells)
                cc = tokens_per_sec(comp, x, args.iters, bf16)
                row += [round(cc), round(f / cc, 2)]
            rows.append(row)
    header = ["kind", "precision", "fused tok/s", "cells tok/s", "fused/cells"]
    if args.compile:
        header += ["compiled cells tok/s", "fused/compiled"]
    table(f"Recurrent fwd+bwd, {args.layers}x{args.hidden}, bptt {args.bptt}, batch {args.batch} ({machine()})", header, rows)


if __name__ == "__main__":
    main()
