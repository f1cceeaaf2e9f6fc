"""Where a data module runs: its DDP rank, the world size, the current epoch and, after a mid-epoch
resume, how far into the epoch it already was (plain defaults when it is used without a Trainer)."""

from __future__ import annotations

from typing import Any


def rank_world(trainer: Any | None) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def current_epoch(trainer: Any | None) -> int:
    return trainer.current_epoch if trainer is not None else 0


def resume_skip(trainer: Any | None, n_batches: int) -> int:
    """Training batches of the current epoch done before a mid-epoch checkpoint (SIGINT/SIGTERM),
    when a run resumes from one: Lightning restored its counters, so the loader must not serve
    those batches again (the epoch's order depends only on the seed and the epoch). 0 otherwise."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if loop is None:
        return 0
    # with steps per execution, Lightning counts groups of K batches (seqgen.data.grouping)
    group = int(getattr(getattr(trainer, "lightning_module", None), "steps_per_execution", 1) or 1)
    done = int(loop.batch_progress.current.completed) * group
    return done if loop.restarting and 0 < done < n_batches else 0
