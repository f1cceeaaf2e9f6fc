#!/usr/bin/env python
"""Translation quality on real data: Multi30k German -> English, sacreBLEU on test_2016_flickr.

    python benchmarks/translation.py --data-dir ../shared/data [--tasks multi30k_de_en_gru multi30k_de_en_attn]
        [--epochs 10] [--out docs/translation] [--dates]

Trains each task through ``seqgen.train.run`` (the configs ``scripts/train.py`` uses), evaluates the
best checkpoint on test_2016_flickr with beam search (the task's ``beam_size``) and with greedy
decoding, and prints epochs, wall time, validation/test perplexity and test BLEU (sacreBLEU 13a,
cased, on detokenised output against the raw reference lines). ``--dates`` adds the dates task
(exact match). The first attention heat maps and the per-task table go to ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from common import QUIET, machine, make_cfg, table  # noqa: E402

from seqgen.train import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder holding multi30k/ (default: paths.data_dir)")
    ap.add_argument("--tasks", nargs="+", default=["multi30k_de_en_gru", "multi30k_de_en_attn"])
    ap.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    ap.add_argument("--dates", action="store_true", help="also train dates_attn")
    ap.add_argument("--work", default="/tmp/seqgen_translation", help="run folders")
    ap.add_argument("--out", default=None, help="copy tables and attention maps here")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every task")
    args = ap.parse_args()
    work = Path(args.work)
    common = list(QUIET) + list(args.extra)
    if args.data_dir:
        common.append(f"paths.data_dir={Path(args.data_dir).resolve()}")
    if args.epochs:
        common.append(f"trainer.max_epochs={args.epochs}")
    tasks = list(args.tasks) + (["dates_attn"] if args.dates else [])
    rows = []
    for task in tasks:
        out = work / task / "run"
        if out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        cfg = make_cfg(out, [f"task={task}", *common])
        m = run(cfg)
        wall = time.perf_counter() - t0
        best = sorted((out / "checkpoints").glob("epoch_*.ckpt"))
        # the same best checkpoint decoded greedily, for the beam-search gain
        g = run(make_cfg(work / task / "greedy", [f"task={task}", *common, "train=false", f"ckpt_path={best[-1]}",
                                                  "model.beam_size=1", "logger=none"]))
        epochs = sum(1 for _ in (out / "samples").glob("val_epoch*.txt"))
        rows.append([task, cfg.model.net.attention, epochs, round(wall / 60, 1), round(m["val/ppl"], 2),
                     round(m["test/ppl"], 2), round(g["test/bleu"], 2), round(m["test/bleu"], 2),
                     round(m["test/exact_match"], 4)])
        if args.out:
            dest = Path(args.out)
            dest.mkdir(parents=True, exist_ok=True)
            for p in sorted((out / "plots").glob("attention_*.png"))[:2]:
                shutil.copyfile(p, dest / f"{task}_{p.name}")
            shutil.copyfile(out / "translations" / "test.tsv", dest / f"{task}_test.tsv")
    text = table(f"Translation ({machine()})",
                 ["task", "attention", "epochs", "wall min", "val ppl", "test ppl", "test BLEU greedy",
                  "test BLEU beam", "exact match"], rows)
    if args.out:
        (Path(args.out) / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
