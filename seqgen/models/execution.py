"""Steps per execution: one Lightning ``training_step`` runs K optimiser steps over K micro-batches.

Lightning spends a fixed 1-2 ms of Python per ``training_step`` on CPU (hook dispatch, the
optimisation closure, result collection, one ``self.log`` costing about 0.7 ms), whatever the
net; on a digits-size net that is a third of the step. Keras's answer is ``steps_per_execution``;
Lightning has none. seqgen's (``steps_per_execution: K`` in a recipe, default 1):

- the training loader yields groups of K consecutive micro-batches (:mod:`seqgen.data.grouping`:
  the same batches in the same order, so Lightning's loop, its DDP sampler, ``limit_train_batches``
  and seqgen's mid-epoch resume all count groups);
- the model's own ``training_step`` runs on each micro-batch in turn. The first K-1 updates are
  made here, as Lightning's automatic optimisation makes them (zero the gradients, backward outside
  autocast, the trainer's gradient clipping through ``configure_gradient_clipping``, the optimiser
  step, step-interval LR schedulers), and the K-th loss is returned to Lightning, whose automatic
  optimisation makes the last update with its hooks, clipping, AMP and scheduler logic as for K=1.
  So the updates are the same updates in the same order as K=1 (tested bit for bit on CPU), and a
  model with manual optimisation (the GAN) simply runs its own step K times;
- ``self.log`` calls inside the group are collected on the device and logged once per group as
  their batch-size-weighted mean (``reduce_fx`` mean; sum/max/min as named), so Lightning's
  per-call logging cost and any conversion to Python numbers happen once per K steps; epoch means
  are unchanged;
- the global step, the logger's step axis and ``max_steps`` stay in optimiser steps.

Under DDP each inner backward is prepared as Lightning prepares manual backward passes
(``prepare_for_backward``), so the gradients are all-reduced at every step as for K=1. Hooks that
Lightning calls around each optimiser step (``on_before_backward``, ``on_after_backward``,
``on_before_optimizer_step``, ``on_before_zero_grad``) run for the last step of each group only;
``on_train_batch_start``/``end`` once per group.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.data import extract_batch_size
from torch import Tensor

try:  # torch's global optimiser step hooks (a step must run torch's wrapper while any is registered)
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # another torch: optimizer_step always takes torch's own step
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = None

_LOG_ARGS = [p for p in inspect.signature(L.LightningModule.log).parameters if p not in ("self", "name", "value")]


def _batch_size(batch: Any) -> int:
    try:
        return int(extract_batch_size(batch))
    except Exception:  # noqa: BLE001 - Lightning's own inference failed: weight this micro-batch as one
        return 1


class DeferredLog:
    """Stands in for ``module.log`` while a group's micro-batches run; :meth:`flush` logs each name
    once. Torchmetrics ``Metric`` objects are logged as given (their state was updated by the calls).

    A call only records its value: tensors are kept as they are (detached) and combined at the
    flush with one stacked reduction per name, so a group of K steps costs one kernel per logged
    name instead of two per call; the micro-batch's size is inferred once per micro-batch."""

    def __init__(self, module: L.LightningModule):
        self.module = module
        self.entries: dict[str, list[Any]] = {}  # name -> [values, weights, kwargs]
        self._batch: Any = None
        self._size: int | None = None

    @property
    def batch(self) -> Any:
        return self._batch

    @batch.setter
    def batch(self, batch: Any) -> None:
        self._batch, self._size = batch, None

    def _batch_weight(self) -> int:
        if self._size is None:
            self._size = _batch_size(self._batch)
        return self._size

    def __enter__(self) -> DeferredLog:
        self.module.__dict__["log"] = self.log  # shadows the method for the length of the group
        return self

    def __exit__(self, *exc: Any) -> None:
        self.module.__dict__.pop("log", None)

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        opts = kwargs  # a fresh dict at every call
        if args:  # positional options, in Lightning's order
            opts = dict(zip(_LOG_ARGS, args))
            opts.update(kwargs)
        if isinstance(value, Tensor):  # a value off the autograd graph is kept as it is (detach would only alias it)
            value = value.detach() if value.requires_grad else value
        elif isinstance(value, (int, float)):
            value = float(value)
        else:  # a torchmetrics Metric (or anything else): as given
            self.entries[name] = [value, None, opts]
            return
        size = opts.get("batch_size")
        weight = int(size) if size is not None else self._batch_weight()
        entry = self.entries.get(name)
        if entry is None or entry[1] is None:
            self.entries[name] = [[value], [weight], opts]
            return
        entry[0].append(value)
        entry[1].append(weight)
        entry[2] = opts

    @staticmethod
    def _reduce(values: list[Any], weights: list[int], reduce: str) -> Any:
        """The group's value of one name: the batch-size-weighted mean (``mean``), the sum, max or
        min of its calls' values, or the last value (any other ``reduce_fx``)."""
        if reduce not in ("mean", "sum", "max", "min"):
            return values[-1]
        if not any(isinstance(v, Tensor) for v in values):  # Python numbers: no kernel at all
            if reduce == "mean":
                return sum(v * w for v, w in zip(values, weights)) / sum(weights)
            return {"sum": sum, "max": max, "min": min}[reduce](values)
        try:  # the usual case, tensor scalars: one kernel, not two a value (mixed dtypes promoted, exactly)
            stacked = torch.stack(values)
        except (TypeError, RuntimeError):  # Python numbers among them, or tensors of different shapes
            stacked = None
        if stacked is not None and stacked.dim() == 1:
            stacked = stacked.float()
        else:
            device = next(v.device for v in values if isinstance(v, Tensor))
            stacked = torch.stack([(v.float().mean() if v.numel() != 1 else v.float().reshape(()))
                                   if isinstance(v, Tensor) else torch.tensor(float(v), device=device) for v in values])
        if reduce == "mean":
            if len(set(weights)) == 1:
                return stacked.mean()
            w = torch.tensor(weights, dtype=stacked.dtype).to(stacked.device, non_blocking=True)
            return (stacked * w).sum() / sum(weights)
        return {"sum": stacked.sum, "max": stacked.max, "min": stacked.min}[reduce]()

    def flush(self) -> None:
        for name, (values, weights, opts) in self.entries.items():
            if weights is None:
                self.module.log(name, values, **opts)
                continue
            reduce = str(opts.get("reduce_fx", "mean")).lower()
            value = self._reduce(values, weights, reduce)
            self.module.log(name, value, **{**opts, "batch_size": sum(weights)})
        self.entries.clear()


class _InnerUpdates:
    """The optimiser steps of a group but its last, each made as Lightning's automatic optimisation
    makes it: zero the gradients, backward (outside autocast), clip, step, step-interval schedulers;
    the global step and the logger's step axis advance by one. What stays the same for the whole
    group (the optimiser, the epoch, clipping, the schedulers, the progress counters, DDP or not) is
    read from the trainer once a group, not at every step: Lightning's properties are chains of
    lookups (about 15 us a step of the digits VAE's Python inside a fit)."""

    def __init__(self, module: L.LightningModule):
        trainer = module.trainer
        self.module = module
        self.optimizer = trainer.optimizers[0]
        self.epoch = trainer.current_epoch
        self.ddp = _ddp(trainer.strategy)
        self.clip = trainer.gradient_clip_val
        self.clip_algorithm = trainer.gradient_clip_algorithm
        self.schedulers = [config.scheduler for config in trainer.lr_scheduler_configs if config.interval == "step"]
        self.loop = trainer.fit_loop.epoch_loop
        self.progress = self.loop.automatic_optimization.optim_progress.optimizer.step
        device_type = module.device.type  # the group runs inside Lightning's precision context: autocast on or off
        self.autocast = device_type if torch.is_autocast_enabled(device_type) else None

    def __call__(self, loss: Tensor, batch_idx: int) -> None:
        with torch.autocast(self.autocast, enabled=False) if self.autocast else contextlib.nullcontext():
            # Lightning's hook (seqgen's modules: clear_grads, gradients set to None as its optimizer.zero_grad())
            self.module.optimizer_zero_grad(self.epoch, batch_idx, self.optimizer)
            _backward(self.ddp, loss)
            if self.clip:
                self.module.configure_gradient_clipping(self.optimizer, gradient_clip_val=self.clip,
                                                        gradient_clip_algorithm=self.clip_algorithm)
            optimizer_step(self.optimizer)
        for scheduler in self.schedulers:
            scheduler.step()
        self.progress.increment_ready()
        self.progress.increment_completed()
        self.loop._batches_that_stepped += 1


def clear_grads(optimizer: Any) -> None:
    """``optimizer.zero_grad(set_to_none=True)``: every gradient of the optimiser's parameters set to
    None, without the profiler range ``zero_grad`` opens at every call when no profiler is running
    (12 against 3 us a call here for the digits VAE's ten tensors; 37 against 50 us measured inside
    a running fit, where every step's Python runs with caches the kernels have just emptied). Under a
    profiler, torch's own, so the trace shows it as ever."""
    if torch.autograd._profiler_enabled():
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def optimizer_step(optimizer: Any) -> None:
    """``optimizer.step()``, without the profiler range that torch's step wrapper opens at every call
    (112 against 98 us a fused Adam step here for the digits VAE), when nothing would notice its
    absence: no profiler running, no step hooks (the optimiser's own or global), and a ``step`` that
    is the class's own or an LR scheduler's counting wrapper of it (whose flag is set here, as the
    wrapper sets it). Anything else, or a torch without these, takes ``optimizer.step()``."""
    step = _bare_step(optimizer)
    if step is None:
        optimizer.step()
        return
    if "step" in vars(optimizer):
        optimizer._opt_called = True  # what the LR scheduler's wrapper records
    if not _fused_adam_step(optimizer):
        step(optimizer)


def _fused_adam_step(optimizer: Any) -> bool:
    """A fused Adam/AdamW step made as torch's makes it -- per parameter group, the step counts
    incremented with ``torch._foreach_add_`` and then ``torch._fused_adam_`` (``_fused_adamw_``) on the
    group's parameters that have gradients, with the group's hyperparameters -- without the Python of
    ``Adam.step`` around those two calls (its per-parameter bookkeeping, the device/dtype grouping, the
    functional dispatch): 60 against 37 us a step for the digits VAE's 20k parameters here, the same
    kernels and arguments, so the same update bit for bit. Only for the plain case: an ``Adam`` or
    ``AdamW`` (exactly), ``fused=True``, every parameter with a gradient already stepped once (torch's
    own first step makes the state), one device and dtype per group, real dense tensors, scalar
    hyperparameters, no amsgrad, capturable, differentiable or gradient scaler. False (nothing done)
    otherwise: torch's own step then runs."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or getattr(optimizer, "grad_scale", None) is not None \
            or getattr(optimizer, "found_inf", None) is not None or not hasattr(torch, "_fused_adam_"):
        return False
    plan = []
    for group in optimizer.param_groups:
        if not group.get("fused") or group.get("amsgrad") or group.get("capturable") or group.get("differentiable") \
                or type(group.get("lr")) is not float or any(type(b) is not float for b in group["betas"]):
            return False
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        first = params[0]
        states = []
        for p in params:
            state = optimizer.state.get(p)
            grad = p.grad
            if (not state or "exp_avg" not in state or p.device != first.device or p.dtype != first.dtype
                    or grad.is_sparse or p.is_complex() or grad.dtype != p.dtype or grad.device != p.device):
                return False
            states.append(state)
        plan.append((group, params, states))
    with torch.no_grad():
        for group, params, states in plan:
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            # AdamW decouples its weight decay (an older torch's AdamW groups have no such key: the class says it)
            decoupled = type(optimizer) is torch.optim.AdamW or group.get("decoupled_weight_decay")
            kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
            kernel(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                   [], steps, amsgrad=False, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                   weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                   grad_scale=None, found_inf=None)
    return True


def _bare_step(optimizer: Any) -> Any:
    """The optimiser class's own step function under torch's hook-and-profile wrapper, or None when
    the wrapper (or anything else around ``step``) has to run."""
    if torch.autograd._profiler_enabled() or _global_optimizer_pre_hooks is None:
        return None
    try:
        if (_global_optimizer_pre_hooks or _global_optimizer_post_hooks or optimizer._optimizer_step_pre_hooks
                or optimizer._optimizer_step_post_hooks):
            return None
    except AttributeError:  # another torch: its own step
        return None
    wrapper = type(optimizer).step
    if not getattr(wrapper, "hooked", False) or not hasattr(wrapper, "__wrapped__"):
        return None  # not torch's wrapper
    patched = vars(optimizer).get("step")
    if patched is not None and not (getattr(patched, "_wrapped_by_lr_sched", False)
                                    and getattr(patched, "__wrapped__", None) is wrapper):
        return None  # the instance's step replaced by something else than a scheduler's counter: it runs
    return wrapper.__wrapped__


def _ddp(strategy: Any) -> torch.nn.parallel.DistributedDataParallel | None:
    """The strategy's model when it is wrapped in DDP, else None."""
    model = getattr(strategy, "model", None)
    return model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None


def _backward(ddp: torch.nn.parallel.DistributedDataParallel | None, loss: Tensor) -> None:
    """``loss.backward()``; under DDP (``ddp``: the wrapped model) prepared first, as Lightning prepares
    a manual backward pass, so the gradients are all-reduced."""
    if ddp is not None:
        from lightning.pytorch.overrides.distributed import prepare_for_backward

        prepare_for_backward(ddp, loss)
    loss.backward()


def manual_update(module: L.LightningModule, optimizer: Any, loss: Tensor) -> None:
    """One update of a manual-optimisation model inside a group (the GAN's steps): zero the gradients,
    backward, step -- what ``manual_backward`` and the ``LightningOptimizer``'s ``step`` do for these
    precisions, without their per-call hook dispatch (callbacks' backward/optimiser-step hooks run
    only with one step per execution); the global step advances as Lightning's would."""
    raw = getattr(optimizer, "optimizer", optimizer)
    clear_grads(raw)
    _backward(_ddp(module.trainer.strategy), loss)
    optimizer_step(raw)
    progress = module.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


def grouped_training_step(module: L.LightningModule, batches: list[Any], batch_idx: int) -> Any:
    """The ``training_step`` of a group: ``batches`` are K consecutive micro-batches, ``batch_idx``
    the group's index in the epoch (micro-batch ``i`` gets ``batch_idx * K + i``)."""
    if not isinstance(batches, list) or not batches:
        raise TypeError("steps_per_execution > 1 expects the training loader to yield lists of micro-batches "
                        "(seqgen.data.grouping.group_loader)")
    objective = type(module).training_step
    trainer = module.trainer
    k = module.steps_per_execution
    first = batch_idx * k
    n = len(batches)
    automatic = module.automatic_optimization
    if automatic and trainer.max_steps is not None and trainer.max_steps >= 0:
        n = max(1, min(n, trainer.max_steps - module.global_step))  # stop at max_steps, not past it
    module.last_group_size = n  # the micro-batches this group trains on (a timer counts these, not len(batches))
    log = DeferredLog(module)
    update = _InnerUpdates(module) if automatic and n > 1 else None
    deferred = hasattr(module, "defer_losses")
    if deferred:
        module.defer_losses()  # the losses' NaN/inf check: once for the group
    state = module.__dict__
    if update is not None:
        state["_group_step"] = module.global_step  # SeqgenModule.global_step reads it until the group ends
    try:
        with log:
            for i in range(n - 1):
                log.batch = batches[i]
                out = objective(module, batches[i], first + i)
                if update is not None:
                    loss = out.get("loss") if isinstance(out, Mapping) else out
                    if loss is not None:
                        update(loss, first + i)
                        state["_group_step"] += 1
            log.batch = batches[n - 1]
            out = objective(module, batches[n - 1], first + n - 1)
    finally:
        state.pop("_group_step", None)
        if deferred:
            module.settle_losses()
    log.flush()
    loop = trainer.fit_loop.epoch_loop
    if not automatic:
        # a manual-optimisation model made its own updates; add the steps Lightning's count of
        # groups does not see to the logger's step axis
        loop._batches_that_stepped += n - 1
    if _crosses_log_step(trainer, loop._batches_that_stepped + 1, n, getattr(module, "log_every_n_steps", 50)):
        if hasattr(module, "check_finite"):
            module.check_finite()  # a NaN/inf loss of any step since the last check stops the run here
    return out


def _crosses_log_step(trainer: L.Trainer, done: int, n: int, every: int) -> bool:
    """Whether the group that brought the optimiser steps to ``done`` (``n`` of them) crossed a
    multiple of ``every``; Lightning's logger then writes this group's values, and only then.

    Lightning decides with ``(step + 1) % trainer.log_every_n_steps == 0`` after each training
    step; its step (``_batches_that_stepped``, the logger's axis) moves ``n`` at a time here, so the
    decision is handed to it through the attribute it reads."""
    crossed = done // every > (done - n) // every
    trainer.log_every_n_steps = done if crossed else done + 1
    return crossed


def optimiser_steps(trainer: L.Trainer, k: int) -> float:
    """``trainer.estimated_stepping_batches`` in optimiser steps when a step runs ``k`` of them
    (Lightning counts groups of ``k`` batches; the last group of an epoch may be shorter)."""
    import math

    estimate = trainer.estimated_stepping_batches  # sets the data up; counts groups per epoch
    if k == 1 or not math.isfinite(estimate):
        return estimate
    loader = trainer.train_dataloader
    groups = trainer.num_training_batches
    per_epoch = groups * k
    if hasattr(loader, "batches_per_epoch") and math.isfinite(groups):
        per_epoch = min(per_epoch, loader.batches_per_epoch())
    total = per_epoch * max(trainer.max_epochs or 1, 1) if trainer.max_epochs not in (None, -1) else float("inf")
    return min(total, trainer.max_steps) if trainer.max_steps not in (None, -1) else total
