"""Small helpers shared by models and nets (no Lightning, no Hydra, no files)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from seqgen.errors import ConfigError


def locate(path: str) -> Any:
    """Import ``pkg.module.Name`` and return the object (Hydra's ``_target_`` convention)."""
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(f"_target_ must be a dotted import path like 'seqgen.nets.RNNLM', got {path!r}")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import {module_name!r} for _target_ {path!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_name!r} has no attribute {attr!r} (from _target_ {path!r})") from None


def build(spec: Any, **kwargs: Any) -> Any:
    """Build an object from a ``{"_target_": "...", **params}`` mapping (or return it as is).

    Models take their nets as such plain mappings, so that the hyperparameters saved in a
    checkpoint are plain data: ``load_from_checkpoint`` works with ``weights_only=True`` and
    no Hydra at load time. Extra ``kwargs`` (e.g. ``vocab_size`` from the data) are merged in.
    """
    if not isinstance(spec, Mapping):
        return spec
    params = {k: v for k, v in spec.items() if k != "_target_"}
    if "_target_" not in spec:
        raise ConfigError(f"expected a mapping with a '_target_' key, got keys {sorted(spec)}")
    target = locate(spec["_target_"])
    params.update(kwargs)
    try:
        return target(**params)
    except TypeError as e:
        raise ConfigError(f"cannot build {spec['_target_']} with {sorted(params)}: {e}") from e


def to_plain(obj: Any) -> Any:
    """Recursively turn mappings/sequences (e.g. OmegaConf containers) into dicts/lists."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ListConfig":
        return [to_plain(v) for v in obj]
    return obj


def check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"{name} must be {kind} integer, got {value!r}")


def check_probability(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an image size given as one number (square) or a pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = (int(s) for s in image_size)
    return h, w
