#!/usr/bin/env python
"""RNN vs LSTM vs GRU on the adding problem (T = 50, 100, 200) and copy memory (T = 50, 100).

Each cell trains the seqgen task ``{adding,copy}_{rnn,lstm,gru}`` at that length for
``--epochs`` epochs of 100 fresh batches (same seed, same hyperparameters for all three
kinds) and reports the final test loss against the task's baseline, and the number of
training steps after which validation first went below ``--solved`` x baseline.

    python benchmarks/long_range.py [--epochs 20] [--lengths-adding 50 100 200] [--lengths-copy 50 100]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from common import machine, make_cfg, table

from seqgen.data.synthetic import baseline
from seqgen.train import run


def steps_to(run_dir: Path, threshold: float) -> int | None:
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            v = row.get("val/loss")
            if v and float(v) < threshold:
                return int(row["step"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lengths-adding", type=int, nargs="*", default=[50, 100, 200])
    ap.add_argument("--lengths-copy", type=int, nargs="*", default=[50, 100])
    ap.add_argument("--kinds", nargs="+", default=["rnn", "lstm", "gru"])
    ap.add_argument("--solved", type=float, default=0.1, help="solved = validation loss below this fraction of the baseline")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem, lengths in (("adding", args.lengths_adding), ("copy", args.lengths_copy)):
            for T in lengths:
                base = baseline(problem, T)
                for kind in args.kinds:
                    out = Path(tmp) / f"{problem}_{kind}_{T}"
                    cfg = make_cfg(out, [f"task={problem}_{kind}", f"data.seq_len={T}", f"trainer.max_epochs={args.epochs}",
                                         "callbacks.progress_bar=null", "callbacks.early_stopping.patience=1000",
                                         "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0"])
                    t0 = time.perf_counter()
                    m = run(cfg)
                    wall = time.perf_counter() - t0
                    solved_at = steps_to(out, args.solved * base)
                    rows.append([problem, T, kind, round(base, 4), round(m["test/loss"], 4), round(m["test/loss"] / base, 3),
                                 solved_at if solved_at is not None else "not solved", round(wall, 1)])
    table(f"Long-range benchmark: {args.epochs} epochs x 100 batches of 64, Adam, clip 1 ({machine()})",
          ["problem", "T", "net", "baseline", "test loss", "loss/baseline", f"steps to < {args.solved}x baseline", "wall s"], rows)


if __name__ == "__main__":
    main()
