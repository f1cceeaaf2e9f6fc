#!/usr/bin/env python
"""ULMFiT-style transfer for text: a language model's embedding and LSTM initialise a classifier.

    python benchmarks/text_transfer.py --data-dir ../shared/data [--fractions 0.001 0.01 0.1 1.0] [--seeds 3]

1. trains ``lm_multi30k_langid`` (LSTM LM over the de/en/fr Multi30k captions, the classifier's
   sentencepiece vocabulary);
2. for each fraction of the 87,000 labelled training captions, trains ``langid_transfer_from_lm``
   from the LM (backbone frozen for epoch 0, then unfrozen at 0.3x the learning rate) and the same
   classifier from random init (nothing frozen), same epochs, and prints test accuracy (mean ± std
   over seeds; one seed at 100%).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import QUIET, machine, make_cfg, table  # noqa: E402

from seqgen.train import run  # noqa: E402

EPOCHS = {0.001: 40, 0.01: 20, 0.1: 6, 1.0: 2}
TRAIN = 87000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lm-epochs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/seqgen_text_transfer")
    ap.add_argument("--out", default=None, help="write the table here (markdown)")
    args = ap.parse_args()
    work = Path(args.work)
    common = list(QUIET) + ([f"paths.data_dir={Path(args.data_dir).resolve()}"] if args.data_dir else [])
    t0 = time.perf_counter()
    lm = run(make_cfg(work / "lm" / "run", ["task=lm_multi30k_langid", f"trainer.max_epochs={args.lm_epochs}", *common]))
    lm_time = time.perf_counter() - t0
    rows = []
    for frac in args.fractions:
        n = int(round(frac * TRAIN))
        epochs = EPOCHS.get(frac, 5)
        seeds = range(args.seeds if frac < 1.0 else 1)
        acc: dict[str, list[float]] = {"random": [], "lm": []}
        secs = 0.0
        for init in ("random", "lm"):
            for seed in seeds:
                extra = [f"model.init_from={work / 'lm' / 'run'}"] if init == "lm" else \
                    ["model.init_from=null", "model.freeze_backbone=false", "model.backbone_lr_mult=1.0"]
                t = time.perf_counter()
                m = run(make_cfg(work / f"clf_{frac}_{init}_{seed}" / "run",
                                 ["task=langid_transfer_from_lm", f"data.train_size={n}", f"trainer.max_epochs={epochs}",
                                  f"seed={seed}", "logger=none", *common, *extra]))
                secs += time.perf_counter() - t
                acc[init].append(100 * m["test/acc"])

        def fmt(v: list[float]) -> str:
            return f"{statistics.mean(v):.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else "")

        rows.append([f"{frac:g} ({n} captions)", epochs, len(seeds), fmt(acc["random"]), fmt(acc["lm"]), round(secs, 1)])
    text = table(f"langid test accuracy (%), random init vs LM init ({machine()}); LM: val ppl {lm['val/ppl']:.1f}, "
                 f"test ppl {lm['test/ppl']:.1f}, {args.lm_epochs} epochs, {lm_time:.0f} s",
                 ["labelled fraction", "epochs", "seeds", "random init", "LM init", "seconds (all runs)"], rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
