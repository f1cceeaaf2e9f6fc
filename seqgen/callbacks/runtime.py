"""Callbacks every run gets from :func:`seqgen.train.run`: per-epoch seeding for exact resume,
and plain-data extras (tokenizer, task name) inside checkpoints."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch import seed_everything


class EpochSeed(L.Callback):
    """Re-seed every RNG just before the first training batch of each epoch with ``seed + epoch``.

    The random stream of epoch ``k`` (dropout masks, noise) then depends only on ``seed`` and
    ``k``, never on what ran before: a run resumed from an epoch-end checkpoint reproduces an
    uninterrupted run exactly (with ``trainer.deterministic=true``). It is done at the first
    batch rather than at ``on_train_epoch_start`` because a resumed Lightning loop creates the
    data iterator (which draws from the global RNG) at a different moment than a running one.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            seed_everything(self.seed + trainer.current_epoch, workers=True, verbose=False)


class CheckpointExtras(L.Callback):
    """Adds ``checkpoint["seqgen"]``: the task name and the data module's plain-data extras
    (e.g. the tokenizer), so ``scripts/generate.py ckpt=...`` needs nothing else."""

    def __init__(self, task_name: str, extras: dict[str, Any] | None = None):
        self.task_name = task_name
        self.extras = extras or {}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        dm = trainer.datamodule
        extras = dict(self.extras)
        if dm is not None and hasattr(dm, "checkpoint_extras"):
            extras.update(dm.checkpoint_extras())
        checkpoint["seqgen"] = {"task": self.task_name, "model_class": type(pl_module).__qualname__, **extras}


class Throughput(L.Callback):
    """Wall-clock training speed: steps/s and items/s (tokens for LMs, images for CNNs) after
    ``warmup`` steps, logged each epoch as ``perf/steps_per_sec`` and ``perf/items_per_sec``."""

    def __init__(self, warmup: int = 5):
        self.warmup = warmup
        self.steps = 0
        self.items = 0
        self.start: float | None = None
        self.elapsed = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        import time

        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        import time

        if self.start is None:
            return
        self.steps += 1
        first = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else batch
        self.items += int(first.numel()) if hasattr(first, "numel") else 0
        self.elapsed = time.perf_counter() - self.start

    @property
    def steps_per_sec(self) -> float:
        return self.steps / self.elapsed if self.elapsed else float("nan")

    @property
    def items_per_sec(self) -> float:
        return self.items / self.elapsed if self.elapsed else float("nan")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.elapsed:
            pl_module.log("perf/steps_per_sec", self.steps_per_sec)
            pl_module.log("perf/items_per_sec", self.items_per_sec)
