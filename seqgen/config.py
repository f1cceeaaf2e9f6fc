"""Checks of the values that no seqgen constructor owns: the run's own keys (``seed``, ``train``,
``test``, ``steps_per_execution``) and the Lightning Trainer's, which Lightning accepts unchecked (``max_epochs=1.5``,
``log_every_n_steps=0``, ``deterministic=maybe``). Every other value has one judge: the
constructor it is passed to (ranges), after ``seqgen.utils.build`` has checked it against the
constructor's annotations (types). Errors name the key and say what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seqgen.errors import ConfigError

TRAINER_POSITIVE_INT = {"log_every_n_steps", "check_val_every_n_epoch", "accumulate_grad_batches", "num_nodes"}
TRAINER_INT_OR_MINUS_ONE = {"max_epochs", "max_steps"}
TRAINER_NON_NEGATIVE = {"gradient_clip_val", "num_sanity_val_steps"}
RUN_BOOL = {"test", "train"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first run or trainer key with an invalid value."""
    for key in RUN_BOOL:
        if key in cfg and not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    spe = cfg.get("steps_per_execution", 1)
    if not (_is_int(spe) and spe > 0):
        raise ConfigError(f"steps_per_execution must be a positive integer, got {spe!r}")
    seed = cfg.get("seed")
    if seed is not None and not _is_int(seed):
        raise ConfigError(f"seed must be an integer or null, got {seed!r}")
    trainer = cfg.get("trainer") or {}
    for key, v in trainer.items():
        if v is None:
            continue
        if key in TRAINER_POSITIVE_INT and not (_is_int(v) and v > 0):
            raise ConfigError(f"trainer.{key} must be a positive integer, got {v!r}")
        if key in TRAINER_INT_OR_MINUS_ONE and not (_is_int(v) and (v > 0 or v == -1)):
            raise ConfigError(f"trainer.{key} must be a positive integer (or -1 for no limit), got {v!r}")
        if key in TRAINER_NON_NEGATIVE and not (_is_num(v) and v >= 0) and not (key == "num_sanity_val_steps" and v == -1):
            raise ConfigError(f"trainer.{key} must be a non-negative number, got {v!r}")
    det = trainer.get("deterministic")
    if det is not None and det not in (True, False, "warn"):
        raise ConfigError(f"trainer.deterministic must be true, false or 'warn', got {det!r}")
