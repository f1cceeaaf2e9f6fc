"""Checks on a composed config that catch bad values before any data is read or any folder
written: every error names the key and says what is allowed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from seqgen.errors import ConfigError

# keys (anywhere in the tree) that hold positive integers
POSITIVE_INT = {
    "batch_size", "eval_batch_size", "hidden_size", "embedding_dim", "num_layers", "bptt", "max_new_tokens",
    "num_samples", "every_n_epochs", "latent_dim", "num_classes", "log_every_n_steps", "check_val_every_n_epoch",
    "accumulate_grad_batches", "max_len", "beam_size", "pieces", "step_size",
}
# keys that hold a probability-like rate in [0, 1)
RATE = {"dropout", "emb_dropout", "input_dropout", "label_smoothing", "val_fraction", "test_fraction"}
# keys that must be positive numbers
POSITIVE_NUMBER = {"lr", "temperature"}
NON_NEGATIVE_NUMBER = {"weight_decay", "momentum", "gradient_clip_val", "forget_bias"}
INT_OR_MINUS_ONE = {"max_epochs", "max_steps"}
BOOL = {"deterministic_algorithms", "bidirectional", "tie_weights", "bptt_jitter", "skip_nonfinite", "compile",
        "save_last"}
TOP_LEVEL_BOOL = {"test", "train"}  # only at the top: data.train / data.test are file paths


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                yield from _walk(v, path)
            else:
                yield path, str(k), v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first key with an invalid value."""
    for path, key, v in _walk(cfg):
        if path.startswith("hydra.") or v is None:
            continue
        if key in POSITIVE_INT and not (_is_int(v) and v > 0):
            raise ConfigError(f"{path} must be a positive integer, got {v!r}")
        if key in RATE and not (_is_num(v) and 0.0 <= v < 1.0):
            raise ConfigError(f"{path} must be a number in [0, 1), got {v!r}")
        if key in POSITIVE_NUMBER and not (_is_num(v) and v > 0):
            raise ConfigError(f"{path} must be a positive number, got {v!r}")
        if key in NON_NEGATIVE_NUMBER and not (_is_num(v) and v >= 0):
            raise ConfigError(f"{path} must be a non-negative number, got {v!r}")
        if key in INT_OR_MINUS_ONE and not (_is_int(v) and (v > 0 or v == -1)):
            raise ConfigError(f"{path} must be a positive integer (or -1 for no limit), got {v!r}")
        if (key in BOOL or path in TOP_LEVEL_BOOL) and not isinstance(v, bool):
            raise ConfigError(f"{path} must be true or false, got {v!r}")
    seed = cfg.get("seed")
    if seed is not None and not _is_int(seed):
        raise ConfigError(f"seed must be an integer or null, got {seed!r}")
    trainer = cfg.get("trainer") or {}
    det = trainer.get("deterministic")
    if det is not None and det not in (True, False, "warn"):
        raise ConfigError(f"trainer.deterministic must be true, false or 'warn', got {det!r}")
