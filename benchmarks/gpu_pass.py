#!/usr/bin/env python
"""The GPU pass: seqgen against the tight plain PyTorch loop (benchmarks/overhead.py) on one device,
written as one markdown table. ``benchmarks/gpu_pass.sh`` installs what the GPU machine lacks and
runs this; ``--tiny`` runs every row on small nets for a few steps (on the CPU when there is no GPU),
so CI keeps it working.

Rows: char LM and word LM tokens/s (fp32, bf16-mixed, compile), ResNet-18 on CIFAR-shaped images
images/s (fp32, bf16-mixed, compile), the dates translator steps/s (fp32, bf16-mixed), each at the
recipe's steps_per_execution beside the plain loop on the same device; ``trainer=ddp
trainer.devices=1``; and the host syncs per training step (CUDA's sync debug mode counts them).
The compiled rows run last; the table is rewritten after every row, so a pass cut short keeps what it
measured; a row that fails says so in the table (exit status 1) and the others still run; rows not
started within ``--budget`` seconds are listed as not run.

    python benchmarks/gpu_pass.py [--tiny] [--out gpu_pass.md] [--budget SECONDS] [--steps N] [--warmup N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import logging
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import lightning as L
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
BY_NAME = {row[0]: row for row in ROWS}
DDP_ROW = "digits MLP, trainer=ddp devices=1 (steps/s)"
SYNC_ROW = "host syncs per training step"


def row_overrides(name: str, variant: str, device: str, tiny: bool) -> tuple[list[str], str]:
    """The seqgen run's overrides for a row of the plan (without its ``max_steps``) and the precision the
    plain loop beside it runs in: the two always the same."""
    accel = "gpu" if device == "cuda" else "cpu"
    precision = "bf16-mixed" if variant == "bf16-mixed" else "32-true"
    common = [f"trainer.precision={precision}", f"trainer.accelerator={accel}", "trainer.max_epochs=-1",
              "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "test=false", *QUIET]
    if name == DDP_ROW:  # trainer=ddp would set bf16-mixed and every device: one device, the row's precision
        return ["task=digits_mlp", "trainer=ddp", "trainer.devices=1", *common], precision
    _, task, _, tiny_over = BY_NAME[name]
    return [*task, *(tiny_over if tiny else []), *common, *(["model.compile=true"] if variant == "compile" else [])], precision


def _timed_row(tmp: Path, device: str, tiny: bool, steps: int, warmup: int, name: str, variant: str) -> list[object]:
    """The plain loop and seqgen timed over ``steps`` steps after ``max(warmup, K)``: seqgen's clock
    starts at the first group that begins after the warm-up (a first group of K >= warmup steps holds
    the cold first step), and the plain loop leaves as many out. The DDP row: the strategy's own
    per-step cost with one device, against the plain loop."""
    over, precision = row_overrides(name, variant, device, tiny)
    tag = f"{name[:4]}-{variant}".replace(" ", "_")
    cfg = make_cfg(tmp / tag, over)
    k = int(cfg.get("steps_per_execution", 1))
    over.append(f"trainer.max_steps={steps + max(warmup, k)}")
    with contextlib.redirect_stdout(io.StringIO()):
        plain = plain_loop(cfg, steps, max(warmup, k), precision, device, compile=variant == "compile")
        ours = seqgen_run(make_cfg(tmp / f"{tag}-s", over), steps, warmup).steps_per_sec
    scale = 1 if name == DDP_ROW else BY_NAME[name][2](cfg)
    return [name, variant, k, round(plain * scale, 1), round(ours * scale, 1), round(ours / plain, 3)]


def plan(device: str, tiny: bool) -> list[tuple[str, str]]:
    """The rows in the order they run: fp32 and bf16 first, then DDP and the sync count, the compiled
    rows last (their compilation is the slowest and least predictable part: if the time budget runs out,
    it runs out there). Tiny mode: every row once in fp32, bf16 once (the char LM)."""
    jobs = []
    for name, *_ in ROWS:
        jobs.append((name, "fp32"))
        if not tiny or name.startswith("char"):
            jobs.append((name, "bf16-mixed"))
    jobs += [(DDP_ROW, "fp32"), (SYNC_ROW, "fp32")]
    if device == "cuda":  # compile needs a GPU here (Inductor's CPU path needs a C++ toolchain and minutes)
        jobs += [(name, "compile") for name, *_ in ROWS if not name.startswith("dates") and not (tiny and not name.startswith("char"))]
    return jobs


def measure(tmp: Path, device: str, tiny: bool, steps: int, warmup: int, budget_s: float,
            progress=lambda rows: None, clock=time.monotonic) -> tuple[list[list[object]], bool]:
    """Every row of the plan; a row that fails is reported in the table (and its traceback on stderr)
    and the rest still run; once ``budget_s`` seconds have passed the rows left are listed as not run.
    ``progress(rows)`` is called after each row; ``clock()`` reads seconds. Returns the rows and whether
    all of them ran."""
    rows, ok, t0 = [], True, clock()
    for name, variant in plan(device, tiny):
        started = clock()
        if started - t0 > budget_s:
            rows.append([name, variant, "-", "-", "-", f"not run: the {budget_s:.0f} s budget was spent"])
            ok = False
        else:
            try:
                if name == SYNC_ROW:
                    rows.append([SYNC_ROW, "fp32", 8, "-", sync_count(tmp, device), "-"])
                else:
                    rows.append(_timed_row(tmp, device, tiny, steps, warmup, name, variant))
            except Exception as e:  # one broken row must not cost the machine's whole pass
                traceback.print_exc()
                rows.append([name, variant, "-", "-", "-", f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
                             if str(e) else f"failed: {type(e).__name__}"])
                ok = False
        print(f"{clock() - started:5.0f} s  {rows[-1]}", flush=True)  # which rows take the machine's time
        progress(rows)
    return rows, ok


class SyncCounter(L.Callback):
    """Counts the synchronising CUDA calls of the training steps of epoch 1 (the first epoch is warm-up)
    with CUDA's sync debug mode, validation left out. ``set_mode``: ``torch.cuda.set_sync_debug_mode``
    (a stand-in on a machine without CUDA, so that the counting run itself is checked there)."""

    def __init__(self, set_mode):
        self.set_mode = set_mode
        self.steps = 0
        self.found: list[warnings.WarningMessage] = []
        self._caught = None
        self._records: list[warnings.WarningMessage] = []

    def _on(self) -> None:
        self.set_mode("warn")

    def _off(self) -> None:
        self.set_mode(0)

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self._caught = warnings.catch_warnings(record=True)
            self._records = self._caught.__enter__()
            warnings.simplefilter("always")
            self._on()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._caught is not None:
            self.steps += len(batch) if getattr(pl_module, "steps_per_execution", 1) > 1 else 1

    def on_validation_start(self, trainer, pl_module):
        if self._caught is not None:
            self._off()

    def on_validation_end(self, trainer, pl_module):
        if self._caught is not None:
            self._on()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._caught is not None:
            self._off()
            self._caught.__exit__(None, None, None)
            self.found = [w for w in self._records if "synchroniz" in str(w.message)]
            self._caught = None


def sync_count(tmp: Path, device: str) -> str:
    """Synchronising CUDA calls per optimiser step of ``digits_mlp`` in its second epoch, as CUDA's sync
    debug mode reports them. Without CUDA the same counting run is made with a stand-in for the mode,
    so that it is checked on any machine, and the cell says there is nothing to count."""
    from seqgen.train import run

    cuda = device == "cuda"
    modes = []
    counter = SyncCounter(torch.cuda.set_sync_debug_mode if cuda else modes.append)
    over = ["task=digits_mlp", f"trainer.accelerator={'gpu' if cuda else 'cpu'}", "trainer.max_epochs=2",
            "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "test=false", *QUIET]
    with contextlib.redirect_stdout(io.StringIO()):
        run(make_cfg(tmp / "sync", over), extra_callbacks=[counter])
    if not counter.steps:
        raise RuntimeError("the counting run timed no training step of its second epoch")
    if not cuda:
        if modes[:1] != ["warn"] or modes[-1:] != [0]:
            raise RuntimeError(f"sync debug mode not switched on and off around the epoch: {modes}")
        return f"n/a: no CUDA (counting run: {counter.steps} steps)"
    return f"{len(counter.found) / counter.steps:.2f} ({len(counter.found)} in {counter.steps} steps)"


def table(rows: list[list[object]], header: str) -> str:
    lines = [header, "", "| what | precision | K | plain loop | seqgen | seqgen / plain |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="small nets, a few steps: the CI check that the pass runs")
    ap.add_argument("--out", default="gpu_pass.md")
    ap.add_argument("--steps", type=int, help="timed steps a row (default 200; tiny 8)")
    ap.add_argument("--warmup", type=int, help="warm-up steps a row, at least the recipe's K (default 24; tiny 4)")
    ap.add_argument("--budget", type=float, default=390.0,
                    help="seconds after which the rows left are not started (default 390: the pass's 8 minutes, "
                         "less the wheels, the imports and the last row)")
    args = ap.parse_args()
    # the pass prints one line a row: Lightning's per-run lines (devices, limits, why fit stopped) and the
    # warnings of runs that stop at max_steps before any validation say nothing about the speeds
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (r".*could not find the monitored key", r".*when logging on epoch level in distributed setting"):
        warnings.filterwarnings("ignore", message=message)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps, warmup = (8, 4) if args.tiny else (200, 24)
    steps, warmup = args.steps or steps, args.warmup if args.warmup is not None else warmup
    what = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    t0 = time.time()

    def header(done: bool) -> str:
        return (f"GPU pass, {datetime.date.today().isoformat()}, {what}, torch {torch.__version__}"
                f"{' (tiny mode)' if args.tiny else ''}; {steps} steps after {warmup} warm-up; {time.time() - t0:.0f} s"
                f"{'' if done else ' so far (not finished)'}")

    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:  # the table is rewritten after every row: a run cut short keeps its rows
        rows, ok = measure(Path(tmp), device, args.tiny, steps, warmup, args.budget,
                           progress=lambda rows: out.write_text(table(rows, header(False))))
    text = table(rows, header(True))
    out.write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
