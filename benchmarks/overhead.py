#!/usr/bin/env python
"""seqgen (Lightning + Hydra config + callbacks) versus a plain PyTorch loop, same process.

Both train the default char-LM net (conf/task/char_lm.yaml) on the same batches with the same
optimiser, gradient clipping and truncated BPTT, for ``--steps`` steps after a warm-up; the
table gives steps/s of each and their ratio, in fp32 and bf16 autocast.

    python benchmarks/overhead.py [--steps 150] [--precisions 32-true bf16-mixed]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine, make_cfg, table

from seqgen.callbacks import Throughput
from seqgen.nets import detach_state
from seqgen.train import build_datamodule, build_model, run


def plain_loop(cfg, steps: int, warmup: int, precision: str) -> float:
    dm = build_datamodule(cfg)
    dm.setup("fit")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dm.dims)
    net = model.net
    opt = torch.optim.Adam(net.parameters(), lr=cfg.model.optimizer.lr)
    clip = cfg.trainer.gradient_clip_val
    autocast = precision.startswith("bf16")
    net.train()
    state, done, t0 = None, 0, None
    while done < steps + warmup:
        for x, y in dm.train_dataloader():
            if done == warmup:
                t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits, state = net(x, state)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
            state = detach_state(state)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            done += 1
            if done == steps + warmup:
                break
    return steps / (time.perf_counter() - t0)


def seqgen_run(cfg, steps: int, warmup: int) -> float:
    timer = Throughput(warmup=warmup)
    run(cfg, extra_callbacks=[timer])
    return timer.steps_per_sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    ap.add_argument("--task", default="char_lm")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for prec in args.precisions:
            overrides = [f"task={args.task}", f"trainer.precision={prec}", f"trainer.max_steps={args.steps + args.warmup}",
                         "trainer.max_epochs=-1", "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0", "test=false",
                         "callbacks.text_samples=null"]
            cfg = make_cfg(Path(tmp) / f"run_{prec}", overrides)
            plain = plain_loop(cfg, args.steps, args.warmup, prec)
            ours = seqgen_run(cfg, args.steps, args.warmup)
            plain2 = plain_loop(cfg, args.steps, args.warmup, prec)  # again, to bracket drift
            plain = (plain + plain2) / 2
            rows.append([args.task, prec, round(plain, 2), round(ours, 2), round(ours / plain, 3)])
    table(f"seqgen vs plain PyTorch loop ({machine()}; {args.steps} steps after {args.warmup} warm-up)",
          ["task", "precision", "plain steps/s", "seqgen steps/s", "ratio"], rows)


if __name__ == "__main__":
    main()
