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
