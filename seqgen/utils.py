"""Small helpers shared by models and nets (no Lightning, no Hydra, no files)."""

from __future__ import annotations

import importlib
import inspect
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


def parameters(target: Any) -> tuple[list[str], bool]:
    """The keyword parameters ``target`` accepts, and whether it also takes ``**kwargs``."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: let the call itself judge
        return [], True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = [n for n, p in sig.parameters.items() if p.kind in kinds and n != "self"]
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def _check_own_keys(spec: Mapping[str, Any], where: str, target: Any = None) -> None:
    target = locate(spec["_target_"]) if target is None else target
    # a factory that forwards **kwargs to a class it picks (``nets.vision.build_net``) names that
    # class's parameters through ``accepted_keys(spec)``
    names, var_kw = target.accepted_keys(spec) if hasattr(target, "accepted_keys") else parameters(target)
    unknown = [k for k in spec if k != "_target_" and k not in names]
    if unknown and not var_kw:
        at = f"{where}." if where else ""
        raise ConfigError(f"unknown key {', '.join(at + k for k in unknown)} for {spec['_target_']}; "
                          f"it accepts: {', '.join(names)}")


def check_keys(spec: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` for a key of a ``{"_target_": ...}`` mapping (at any depth,
    lists included) that its target does not accept, naming the key's full path and listing what
    the target accepts. Targets that take ``**kwargs`` are left to their own constructor."""
    if isinstance(spec, Mapping):
        if "_target_" in spec:
            _check_own_keys(spec, where)
        for k, v in spec.items():
            check_keys(v, f"{where}.{k}" if where else str(k))
    elif isinstance(spec, (list, tuple)):
        for i, v in enumerate(spec):
            check_keys(v, f"{where}[{i}]")


_SIMPLE = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """The plain types an annotation admits (``int | None`` -> (int, NoneType)); None when it says
    more than plain types (then the constructor is left to judge)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if annotation in _SIMPLE or annotation is type(None):
        return (annotation,)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(annotation):
            got = _allowed_types(arg)
            if got is None:
                return None
            out += got
        return out
    if origin in (list, tuple, dict) or annotation in (list, tuple, dict):
        return (origin or annotation,)
    return None


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    if isinstance(value, float):
        return float in allowed
    if isinstance(value, (list, tuple)):
        return list in allowed or tuple in allowed
    if isinstance(value, Mapping):
        return dict in allowed
    return type(value) in allowed or not any(t in _SIMPLE for t in allowed)


def check_types(target: Any, params: Mapping[str, Any], where: str = "") -> None:
    """Each value against the plain type its parameter is annotated with (``int``, ``float``,
    ``bool``, ``str``, ``list``, optional or unions of them): ``data.batch_size=abc`` or
    ``model.net.bidirectional=yes`` is a ConfigError naming the key, before anything is built.
    Ranges (positive, in [0, 1), ...) are the constructor's to check: each value has one judge."""
    import typing

    try:
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # annotations that do not resolve here: the constructor decides
        return
    at = f"{where}." if where else ""
    for key, value in params.items():
        allowed = _allowed_types(hints[key]) if key in hints else None
        if allowed and not _fits(value, allowed):
            want = " or ".join(_SIMPLE.get(t, "null" if t is type(None) else f"a {t.__name__}") for t in allowed)
            raise ConfigError(f"{at}{key} must be {want}, got {value!r}")


def _placed(message: str, where: str, names: list[str]) -> str:
    """``dropout must be ...`` from a net built at ``model.net`` -> ``model.net.dropout must be ...``."""
    import re

    if not where or message.startswith(where):
        return message
    first = re.match(r"[A-Za-z_]\w*", message)
    return f"{where}.{message}" if first and first.group(0) in names else f"{where}: {message}"


def build(spec: Any, where: str = "", offered: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """Build an object from a ``{"_target_": "...", **params}`` mapping (or return it as is): the
    one way seqgen builds data modules, models, nets, callbacks, loggers and the trainer.

    Models take their nets as such plain mappings, so that the hyperparameters saved in a
    checkpoint are plain data: ``load_from_checkpoint`` works with ``weights_only=True`` and
    no Hydra at load time. A key the target does not accept is an error naming it (``where`` is
    the key's place in the config, e.g. ``model.net``). ``kwargs`` are merged over the spec;
    ``offered`` values (the data's dimensions: ``vocab_size``, ``num_classes``, ...) are passed
    only where the target names them and the spec does not set them.
    """
    if not isinstance(spec, Mapping):
        return spec
    if "_target_" not in spec:
        raise ConfigError(f"{where or 'config'}: expected a mapping with a '_target_' key, got keys {sorted(spec)}")
    target = locate(spec["_target_"])
    _check_own_keys(spec, where, target)
    own = {k: v for k, v in spec.items() if k != "_target_"}
    params = dict(own)
    names, _ = parameters(target)
    for k, v in (offered or {}).items():
        if k not in names:
            continue
        if k in params and params[k] is not None and to_plain(params[k]) != to_plain(v):
            at = f"{where}." if where else ""
            raise ConfigError(f"{at}{k}={params[k]!r} contradicts the data, which gives {k}={v!r}; leave {at}{k} out "
                              "(it comes from the data)")
        params.setdefault(k, v)
    params.update(kwargs)
    check_types(target, own, where)
    try:
        return target(**params)
    except ConfigError as e:  # the constructor's own check: name the key where the config holds it
        raise type(e)(_placed(str(e), where, names)) from e
    except TypeError as e:
        raise ConfigError(f"cannot build {where + ' = ' if where else ''}{spec['_target_']} with "
                          f"{sorted(params)}: {e}") from e


def to_plain(obj: Any) -> Any:
    """Recursively turn mappings/sequences (e.g. OmegaConf containers) into dicts/lists."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ListConfig":
        return [to_plain(v) for v in obj]
    if type(obj).__module__ == "torch" and hasattr(obj, "tolist"):  # a size or a 0-d tensor from the data
        return obj.tolist()
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
