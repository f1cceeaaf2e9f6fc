"""Shared plumbing of seqgen's LightningModules: optimiser/scheduler from config, compile,
non-finite loss handling. Subclasses implement one training objective each."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from seqgen.errors import ConfigError, NonFiniteLossError
from seqgen.models.execution import clear_grads, optimiser_steps
from seqgen.models.optim import (
    build_optimizer,
    build_scheduler,
    check_optimizer,
    check_scheduler,
    param_groups,
)
from seqgen.utils import build, to_plain


def build_net(spec: dict[str, Any] | torch.nn.Module, where: str = "model.net", **dims: Any) -> torch.nn.Module:
    """Build a net from a plain ``{"_target_": ...}`` mapping with :func:`seqgen.utils.build`,
    offering it the data dimensions (``num_classes``, ``in_channels``, ``image_size``, ...; None
    ones are left out): those its constructor names and the spec does not set. A key of the spec
    that the net does not accept is an error naming ``where.<key>``. A ready ``nn.Module`` is
    returned as is."""
    if not isinstance(spec, dict):
        return spec
    return build(to_plain(spec), where=where, offered={k: v for k, v in dims.items() if v is not None})


def net_takes(net: torch.nn.Module, name: str) -> bool:
    """Whether ``net``'s ``forward`` has a parameter ``name`` (a compiled net: the module inside):
    how a model learns that a net takes extra inputs (``lengths``) or computes its loss (``targets``)."""
    import inspect

    return name in inspect.signature(getattr(net, "_orig_mod", net).forward).parameters


class SeqgenModule(L.LightningModule):
    """Base LightningModule. ``optimizer``/``scheduler`` are plain dicts, e.g.
    ``{"name": "adam", "lr": 2e-3, "weight_decay": 0}`` and ``{"name": "cosine"}``."""

    def __init__(self, optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False):
        super().__init__()
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        check_optimizer(self.optimizer_cfg)
        check_scheduler(self.scheduler_cfg)
        self.skip_nonfinite = skip_nonfinite
        self.compile_net = compile
        self.skipped_steps = 0
        self.steps_per_execution = 1
        self.channels_last = False

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` (a hook's name or None) before and after every hook it calls,
        # the module's and the callbacks': 42 times a training step of the digits MLP at one step per
        # execution. ``nn.Module.__setattr__`` first checks the value against the parameters, buffers
        # and submodules (1.3 against 0.14 us a set here) and then stores it as a plain attribute,
        # which this does at once.
        if name == "_current_fx_name" and (value is None or type(value) is str):
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    @property
    def global_step(self) -> int:
        """Lightning's global step (optimiser steps taken). Inside a group of steps per execution, the
        group keeps it (``_group_step``, advanced with each of its updates): the same number without
        Lightning's chain of five properties at every read (twice a step for the digits VAE)."""
        step = self.__dict__.get("_group_step")
        return L.LightningModule.global_step.fget(self) if step is None else step

    def use_steps_per_execution(self, k: int) -> None:
        """Run ``k`` optimiser steps per Lightning ``training_step`` (see
        :mod:`seqgen.models.execution`); the training loader must then yield lists of ``k``
        micro-batches (``seqgen.train.run`` arranges both from the recipe's ``steps_per_execution``)."""
        import types

        from seqgen.models.execution import grouped_training_step

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"steps_per_execution must be a positive integer, got {k!r}")
        self.steps_per_execution = k
        if k == 1:
            self.__dict__.pop("training_step", None)
            return

        def training_step(self: SeqgenModule, batches: list[Any], batch_idx: int) -> Any:
            return grouped_training_step(self, batches, batch_idx)

        self.__dict__["training_step"] = types.MethodType(training_step, self)

    def weights_cast_once(self) -> Any:
        """A block in which, under mixed precision, each weight is cast to the lower precision once
        (torch's autocast cache) rather than at every use. Lightning's mixed precision turns the
        cache off, so a decoder stepping through T positions cast its weights T times a step (the
        dates translator in bf16: 67 against 64 ms a forward + backward here). The cache is cleared
        on leaving the block: the next optimiser step changes the weights. Outside autocast, or with
        the cache already on, it does nothing."""
        device_type = self.device.type
        if not torch.is_autocast_enabled(device_type) or torch.is_autocast_cache_enabled():
            return contextlib.nullcontext()
        return _cached_casts(device_type)

    def use_channels_last(self, on: bool) -> None:
        """NHWC memory format for ``self.net``'s convolutions (oneDNN's faster kernels on CPUs, tensor
        cores with AMP on GPUs); batches are brought to it by :meth:`to_layout`."""
        self.channels_last = bool(on)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def to_layout(self, x: Tensor) -> Tensor:
        """An image batch in the net's memory format (NHWC with ``channels_last``; otherwise as given)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def save_hparams_with_net(self, net: dict[str, Any] | torch.nn.Module) -> bool:
        """``save_hyperparameters()`` of the calling ``__init__``, its ``net`` stored as plain data when
        it is a ``{"_target_": ...}`` spec (so checkpoints load with ``weights_only=True``) and left
        out when it is a ready ``nn.Module``. Returns whether ``net`` is a spec."""
        import inspect

        plain = isinstance(net, dict)
        self.save_hyperparameters(ignore=[] if plain else ["net"], frame=inspect.currentframe().f_back)
        if plain:
            self.hparams["net"] = to_plain(net)
        return plain

    def configure_model(self) -> None:
        if self.compile_net and hasattr(self, "net") and not getattr(self, "_compiled", False):
            self.net = torch.compile(self.net)
            self._compiled = True

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Lightning's hook, doing what its default does (``optimizer.zero_grad()``: every gradient set
        to None) without the profiler range torch opens at every call when no profiler runs
        (:func:`seqgen.models.execution.clear_grads`). A subclass may override it as Lightning's."""
        clear_grads(optimizer)

    def finite_or_skip(self, loss: Tensor) -> Tensor | None:
        """The loss, with a NaN/inf loss handled without a host sync per step.

        With ``skip_nonfinite``, a non-finite loss returns None (Lightning then skips the step) and is
        counted; that decision needs the value at once, so it reads it every step. Otherwise the
        first non-finite step is noted on the device (for a group of steps per execution, once for the
        group's stacked losses) and :meth:`check_finite` raises it every
        ``trainer.log_every_n_steps`` steps (at the groups that cross a multiple of it with steps per
        execution), before any checkpoint is written and at each epoch's end (``seqgen.callbacks.FiniteGuard``): a
        checkpoint never holds the weights of a step after a non-finite loss."""
        if self.skip_nonfinite:
            if torch.isfinite(loss).all():
                return loss
            self.skipped_steps += 1
            self.log("train/skipped_steps", float(self.skipped_steps))
            return None
        pending = self.__dict__.get("_pending_losses")
        if pending is not None:  # inside a group of steps: noted once, at the group's end (settle_losses)
            pending.append((loss.detach(), self.global_step))
            return loss
        self._note_nonfinite(loss.detach().float().reshape(-1)[:1], [self.global_step])
        trainer = self._trainer
        if trainer is not None and self.steps_per_execution == 1 and (self.global_step + 1) % max(
                int(trainer.log_every_n_steps or 1), 1) == 0:
            self.check_finite()
        return loss

    def defer_losses(self) -> None:
        """From now until :meth:`settle_losses`, :meth:`finite_or_skip` only records each loss and its
        step (a group of steps per execution: one stacked check per group instead of one per step)."""
        self.__dict__["_pending_losses"] = []

    def settle_losses(self) -> None:
        """Note the first non-finite loss among those recorded since :meth:`defer_losses`, as
        :meth:`finite_or_skip` notes one step's: a few kernels for the whole group, no host sync."""
        pending = self.__dict__.pop("_pending_losses", None)
        if not pending:
            return
        with torch.no_grad():
            values = torch.stack([loss.reshape(-1)[0] if loss.dim() else loss for loss, _ in pending]).float()
        self._note_nonfinite(values, [step for _, step in pending])

    def _note_nonfinite(self, values: Tensor, steps: list[int]) -> None:
        """Keep, on the device, the step and value of the first non-finite entry of ``values`` (the
        losses of optimiser steps ``steps``) unless an earlier one is already kept."""
        bad = ~torch.isfinite(values)
        first = self.__dict__.get("_first_bad")
        if first is None:
            first = torch.full((), -1, dtype=torch.long, device=values.device)
            self.__dict__["_bad_value"] = torch.zeros((), device=values.device)
        if len(steps) == 1:
            step, value, found = steps[0], values.reshape(()), bad.reshape(())
        else:
            i = bad.to(torch.uint8).argmax()  # the first non-finite entry (0 when there is none)
            step = torch.tensor(steps).to(values.device, non_blocking=True)[i]
            value, found = values[i], bad.any()
        new = found & (first < 0)
        self.__dict__["_first_bad"] = torch.where(new, step, first)
        self.__dict__["_bad_value"] = torch.where(new, value, self.__dict__["_bad_value"])

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` naming the first step whose loss was NaN/inf since the
        last check (one read of a device value)."""
        first = self.__dict__.get("_first_bad")
        if first is None:
            return
        step = int(first)
        if step < 0:
            return
        value = float(self.__dict__["_bad_value"])
        self.__dict__.pop("_first_bad", None)
        raise NonFiniteLossError(
            f"loss became {value} at global step {step} (epoch {self.current_epoch}); "
            "training stopped. Lower the learning rate, clip gradients (trainer.gradient_clip_val), "
            "or set model.skip_nonfinite=true to skip such steps."
        )

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """The trainer's gradient clipping, over the optimiser's parameters with torch's multi-tensor
        kernels. Lightning's own path refuses fused optimisers under any mixed precision, because
        a fused step unscales fp16 gradients itself; with no gradient scaler (fp32, bf16) there is
        nothing to unscale, so the gradients are clipped here. With a scaler (fp16), Lightning's
        path (the optimiser is then not fused: :meth:`configure_optimizers`)."""
        if not gradient_clip_val:
            return
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm) or "norm").lower() == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val, foreach=True)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)

    def optimizer_groups(self, lr: float, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser; subclasses may give parts their own learning rate."""
        return param_groups(self, weight_decay, decay_all)

    def configure_optimizers(self) -> Any:
        cfg = {k: v for k, v in self.optimizer_cfg.items() if v is not None}  # null = "not for this optimizer"
        name, lr = cfg.pop("name", "adam"), cfg.pop("lr", 1e-3)
        wd = cfg.pop("weight_decay", 0.0)
        decay_all = cfg.pop("decay_norm_and_bias", False)
        if _scaled_and_clipped(self._trainer):
            cfg.setdefault("fused", False)  # a fused step unscales fp16 gradients itself: they could not be clipped first
        opt = build_optimizer(self.optimizer_groups(lr, wd, decay_all), name, lr, **cfg)
        scfg = dict(self.scheduler_cfg)
        sname = scfg.pop("name", "none")
        total = None
        if sname in ("cosine", "onecycle"):
            total = optimiser_steps(self.trainer, self.steps_per_execution) if self.trainer is not None else None
            total = int(total) if total is not None and math.isfinite(total) else None
        sched = build_scheduler(opt, sname, total_steps=total, **scfg)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}


@contextlib.contextmanager
def _cached_casts(device_type: str) -> Any:
    with torch.autocast(device_type, dtype=torch.get_autocast_dtype(device_type), cache_enabled=True):
        try:
            yield
        finally:
            torch.clear_autocast_cache()


def _scaled_and_clipped(trainer: Any) -> bool:
    """fp16 mixed precision (a gradient scaler) with gradient clipping."""
    if trainer is None:
        return False
    return bool(trainer.gradient_clip_val) and str(trainer.precision).startswith("16")
