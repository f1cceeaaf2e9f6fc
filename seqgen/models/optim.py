"""Optimisers and LR schedulers by name, with the valid names listed on a typo."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from seqgen.errors import ConfigError

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
SCHEDULERS = ("none", "step", "multistep", "cosine", "onecycle", "plateau", "exponential")


def param_groups(module: nn.Module | list[nn.Parameter], weight_decay: float, decay_norm_and_bias: bool = False,
                 include_frozen: bool = False, **extra: Any) -> list[dict[str, Any]]:
    """Weight decay on weight matrices/kernels only; biases and norm parameters (1-D) excluded.
    ``include_frozen`` keeps parameters with ``requires_grad=False`` (so that unfreezing them
    later needs no new optimizer; torch optimizers skip parameters without gradients)."""
    params = list(module.parameters()) if isinstance(module, nn.Module) else list(module)
    keep, seen = [], set()
    for p in params:
        if (p.requires_grad or include_frozen) and id(p) not in seen:
            seen.add(id(p))
            keep.append(p)
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": keep, "weight_decay": weight_decay, **extra}]
    decay = [p for p in keep if p.dim() >= 2]
    no_decay = [p for p in keep if p.dim() < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay, **extra},
                        {"params": no_decay, "weight_decay": 0.0, **extra}) if g["params"]]


def build_optimizer(params: Iterable[Any], name: str = "adam", lr: float = 1e-3, **kwargs: Any) -> torch.optim.Optimizer:
    check_optimizer({"name": name, "lr": lr, **kwargs})
    key = str(name).lower()
    if key == "sgd":
        kwargs.setdefault("momentum", 0.0)
    if "fused" not in kwargs and "foreach" not in kwargs:
        params = list(params)
        if fusable(key, params):
            kwargs["fused"] = True
    try:
        return OPTIMIZERS[key](params, lr=lr, **kwargs)
    except TypeError as e:
        raise ConfigError(f"optimizer {name!r}: {e}") from e


# torch's fused kernels, by device: Adagrad's fused step has no CUDA kernel in some of the torch
# releases this package supports (2.4 among them), and torch finds that out only at the first step
FUSED = {"cpu": {"adam", "adamw", "adagrad", "sgd"}, "cuda": {"adam", "adamw", "sgd"}}


def fusable(name: str, params: list[Any]) -> bool:
    """Whether torch's fused implementation of optimiser ``name`` can take ``params`` (floating point,
    on a CPU or CUDA device with that kernel: ``FUSED``). The default wherever it can: one kernel over
    all parameters instead of a Python loop, 3x (MLP) to 8x (2x512 LSTM) faster for Adam on these
    CPUs, same update up to rounding. ``model.optimizer.fused=false`` gives the for-loop implementation."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return bool(tensors) and all(t.is_floating_point() and name in FUSED.get(t.device.type, ()) for t in tensors)


def check_optimizer(cfg: dict[str, Any]) -> None:
    """At construction: the optimiser's name and the values torch would refuse only at fit start."""
    name = str(cfg.get("name", "adam")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.get('name')!r}; available: {', '.join(OPTIMIZERS)}")
    lr = cfg.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"model.optimizer.lr must be a positive number, got {lr!r}")
    for key in ("weight_decay", "momentum"):
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConfigError(f"model.optimizer.{key} must be a non-negative number, got {v!r}")
    if name == "sgd" and cfg.get("nesterov") and not cfg.get("momentum"):
        raise ConfigError("Nesterov SGD needs momentum > 0")


def check_scheduler(cfg: dict[str, Any]) -> None:
    """At construction: the scheduler's name and the settings it needs."""
    name = str(cfg.get("name", "none")).lower()
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {cfg.get('name')!r}; available: {', '.join(SCHEDULERS)}")
    v = cfg.get("step_size")
    if name == "step" and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
        raise ConfigError(f"model.scheduler.step_size must be a positive integer, got {v!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, name: str = "none", total_steps: int | None = None,
                    monitor: str = "val/loss", **kw: Any) -> dict[str, Any] | None:
    """Return a Lightning ``lr_scheduler`` dict, or None for ``none``."""
    check_scheduler({"name": name, **kw})
    key = str(name).lower()
    if key == "none":
        return None
    interval = "epoch"
    if key == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=kw.get("step_size", 1), gamma=kw.get("gamma", 0.5))
    elif key == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(kw.get("milestones", [])), gamma=kw.get("gamma", 0.5))
    elif key == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=kw.get("gamma", 0.9))
    elif key == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=kw.get("factor", 0.25), patience=kw.get("patience", 0))
        return {"scheduler": sched, "interval": "epoch", "monitor": monitor}
    elif key == "cosine":
        if not total_steps:
            raise ConfigError("the cosine scheduler needs a known number of training steps")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=kw.get("eta_min", 0.0))
        interval = "step"
    else:  # onecycle
        if not total_steps:
            raise ConfigError("the one-cycle scheduler needs a known number of training steps")
        max_lr = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                    pct_start=kw.get("pct_start", 0.3))
        interval = "step"
    return {"scheduler": sched, "interval": interval}
