#!/usr/bin/env python
"""The GPU pass: seqgen against the tight plain PyTorch loop (benchmarks/overhead.py) on one device,
written as one markdown table. ``benchmarks/gpu_pass.sh`` installs what the GPU machine lacks and
runs this; ``--tiny`` runs every row on small nets for a few steps (on the CPU when there is no GPU),
so CI keeps it working.

Rows: char LM and word LM tokens/s (fp32, bf16-mixed, compile), ResNet-18 on CIFAR-shaped images
images/s (fp32, bf16-mixed, compile), the dates translator steps/s (fp32, bf16-mixed), each at the
recipe's steps_per_execution beside the plain loop on the same device; ``trainer=ddp
trainer.devices=1``; and the host syncs per training step (CUDA's sync debug mode counts them).

    python benchmarks/gpu_pass.py [--tiny] [--out gpu_pass.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import QUIET, make_cfg
from overhead import plain_loop, seqgen_run

# name, task overrides, tokens (or images) per step, tiny overrides
TINY_LM = ["model.net.hidden_size=32", "model.net.num_layers=1", "model.net.embedding_dim=16", "data.batch_size=8",
           "data.bptt=20"]
ROWS = [
    ("char LM (tokens/s)", ["task=char_lm", "callbacks.text_samples=null"], lambda c: c.data.batch_size * c.data.bptt,
     TINY_LM),
    ("word LM (tokens/s)", ["task=lm_wikitext2_lstm", "data=pydoc_chars", "data.level=word", "callbacks.text_samples=null"],
     lambda c: c.data.batch_size * c.data.bptt, TINY_LM),
    ("ResNet-18, CIFAR shape (images/s)", ["task=cifar10_resnet18", "data.dataset=synthetic", "augment=none"],
     lambda c: c.data.batch_size, ["data.batch_size=8", "model.net.name=lenet5"]),
    ("dates translator (steps/s)", ["task=dates_attn", "data.num_train=2000", "data.num_eval=100"], lambda c: 1,
     ["model.net.hidden_size=16", "data.num_train=200", "data.num_eval=20"]),
]


def measure(tmp: Path, device: str, tiny: bool, steps: int, warmup: int) -> list[list[object]]:
    """Each row: the plain loop and seqgen timed over ``steps`` steps after ``max(warmup, K)``: seqgen's
    clock starts at the first group that begins after the warm-up (a first group of K >= warmup steps
    holds the cold first step), and the plain loop leaves as many out."""
    out = []
    accel = "gpu" if device == "cuda" else "cpu"
    for name, task, per_step, tiny_over in ROWS:
        for variant in ("fp32", "bf16-mixed", "compile"):
            if variant == "compile" and (name.startswith("dates") or device != "cuda"):
                continue  # compile needs a GPU here (Inductor's CPU path needs a C++ toolchain and minutes)
            if tiny and variant != "fp32" and not name.startswith("char"):
                continue  # tiny mode: every row once, bf16 once
            precision = "32-true" if variant != "bf16-mixed" else "bf16-mixed"
            over = [*task, *(tiny_over if tiny else []), f"trainer.precision={precision}", f"trainer.accelerator={accel}",
                    "trainer.max_epochs=-1", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
                    "test=false", *QUIET]
            if variant == "compile":
                over.append("model.compile=true")
            cfg = make_cfg(tmp / f"{len(out)}", over)
            k = int(cfg.get("steps_per_execution", 1))
            over.append(f"trainer.max_steps={steps + max(warmup, k)}")
            with contextlib.redirect_stdout(io.StringIO()):
                plain = plain_loop(cfg, steps, max(warmup, k), precision, device, compile=variant == "compile")
                ours = seqgen_run(make_cfg(tmp / f"{len(out)}s", over), steps, warmup).steps_per_sec
            scale = per_step(cfg)
            out.append([name, variant, k, round(plain * scale, 1), round(ours * scale, 1), round(ours / plain, 3)])
            print(out[-1], flush=True)
    # DDP with one device: the strategy's own per-step cost
    over = ["task=digits_mlp", "trainer=ddp", "trainer.devices=1", f"trainer.accelerator={accel}", "trainer.max_epochs=-1",
            "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "test=false", *QUIET]
    cfg = make_cfg(tmp / "ddp", over)
    k = int(cfg.get("steps_per_execution", 1))
    over.append(f"trainer.max_steps={steps + max(warmup, k)}")
    with contextlib.redirect_stdout(io.StringIO()):
        plain = plain_loop(cfg, steps, max(warmup, k), "32-true", device)
        ours = seqgen_run(make_cfg(tmp / "ddp_s", over), steps, warmup).steps_per_sec
    out.append(["digits MLP, trainer=ddp devices=1 (steps/s)", "fp32", k,
                round(plain, 1), round(ours, 1), round(ours / plain, 3)])
    out.append(["host syncs per training step", "fp32", 8, "-", sync_count(tmp, device, steps), "-"])
    return out


def sync_count(tmp: Path, device: str, steps: int) -> str:
    """Synchronising CUDA calls per optimiser step of ``digits_mlp`` after its first epoch, as CUDA's
    sync debug mode reports them ("n/a" without CUDA)."""
    if device != "cuda":
        return "n/a (no CUDA)"
    import lightning as L

    from seqgen.train import run

    class Count(L.Callback):
        def __init__(self):
            self.steps = 0
            self.caught = None

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                self.caught = warnings.catch_warnings(record=True)
                self.records = self.caught.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.caught is not None:
                self.steps += len(batch) if getattr(pl_module, "steps_per_execution", 1) > 1 else 1

        def on_train_epoch_end(self, trainer, pl_module):
            if self.caught is not None:
                torch.cuda.set_sync_debug_mode(0)
                self.caught.__exit__(None, None, None)
                self.found = [w for w in self.records if "synchroniz" in str(w.message)]
                self.caught = None

    counter = Count()
    over = ["task=digits_mlp", "trainer.accelerator=gpu", "trainer.max_epochs=2", "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0", "test=false", *QUIET]
    with contextlib.redirect_stdout(io.StringIO()):
        run(make_cfg(tmp / "sync", over), extra_callbacks=[counter])
    found = getattr(counter, "found", [])
    return f"{len(found) / max(counter.steps, 1):.2f} ({len(found)} in {counter.steps} steps)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="small nets, a few steps: the CI check that the pass runs")
    ap.add_argument("--out", default="gpu_pass.md")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps, warmup = (8, 4) if args.tiny else (200, 24)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp), device, args.tiny, steps, warmup)
    what = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    lines = [f"GPU pass, {datetime.date.today().isoformat()}, {what}, torch {torch.__version__}"
             f"{' (tiny mode)' if args.tiny else ''}; {steps} steps after {warmup} warm-up; {time.time() - t0:.0f} s",
             "", "| what | precision | K | plain loop | seqgen | seqgen / plain |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
