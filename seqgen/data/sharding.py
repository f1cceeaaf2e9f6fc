"""Where a data module runs: its DDP rank, the world size and the current epoch (plain defaults
when it is used without a Trainer)."""

from __future__ import annotations

from typing import Any


def rank_world(trainer: Any | None) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def current_epoch(trainer: Any | None) -> int:
    return trainer.current_epoch if trainer is not None else 0
