"""Callbacks every run gets from :func:`seqgen.train.run`: per-epoch seeding for exact resume,
and plain-data extras (tokenizer, task name) inside checkpoints."""

from __future__ import annotations

import functools
from typing import Any

import lightning as L
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar

from seqgen.errors import ConfigError


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain Python data (loadable with ``weights_only=True``)."""
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    # Python's 625 state words as one tensor: a tuple of ints is 625 objects to pickle at every checkpoint
    state = {"torch": torch.get_rng_state(), "python": (version, torch.tensor(internal, dtype=torch.int64), gauss_next),
             "numpy": (kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal.tolist()) if isinstance(internal, torch.Tensor) else tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    """Lightning's ``seed_everything(seed, workers=True, verbose=False)``: Python's, NumPy's and
    torch's RNGs and the ``PL_GLOBAL_SEED``/``PL_SEED_WORKERS`` variables, the same states.

    Where no accelerator has been started (a CPU run), torch's CPU generator is seeded directly:
    ``torch.manual_seed`` would also queue a seeding call for each accelerator not yet started
    (CUDA, XPU, MTIA), each with a formatted Python stack (``traceback.format_stack``, which reads
    source files): about 0.5 ms at every epoch of a CPU run. Once one has been started (a GPU
    run), torch's own path seeds it."""
    import os
    import random

    import numpy as np
    import torch

    seed = int(seed)
    if _accelerator_started(torch):
        seed_everything(seed, workers=True, verbose=False)
        return
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"


def _accelerator_started(torch: Any) -> bool:
    """Whether a device other than the CPU has been initialised (or is MPS / a custom backend,
    which torch seeds at once): then ``torch.manual_seed`` seeds it."""
    for name in ("cuda", "xpu", "mtia"):
        module = getattr(torch, name, None)
        initialised = getattr(module, "is_initialized", None)
        if initialised is not None and initialised():
            return True
    if getattr(torch._C, "_has_mps", False):
        return True
    return hasattr(torch, torch._C._get_privateuse1_backend_name())


class EpochSeed(L.Callback):
    """Re-seed every RNG just before the first training batch of each epoch with ``seed + epoch``.

    The random stream of epoch ``k`` (dropout masks, noise) then depends only on ``seed`` and
    ``k``, never on what ran before: a run resumed from an epoch-end checkpoint reproduces an
    uninterrupted run exactly (with ``trainer.deterministic=true``). It is done at the first
    batch rather than at ``on_train_epoch_start`` because a resumed Lightning loop creates the
    data iterator (which draws from the global RNG) at a different moment than a running one.
    Checkpoints also carry the RNG states of the moment they were written: a run resumed from a
    mid-epoch checkpoint (SIGINT/SIGTERM) restores them before its first batch.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._resume_rng: dict[str, Any] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            seed_all(self.seed + trainer.current_epoch)
        elif self._resume_rng is not None:  # first batch after a mid-epoch resume
            set_rng_state(self._resume_rng)
        self._resume_rng = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_rng = state_dict.get("rng")


def _previous(handler: Any, signum: int, frame: Any) -> None:
    """Act as the handler that was installed before: call it, ignore, or die by the default action."""
    import os
    import signal

    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class GracefulInterrupt(L.Callback):
    """SIGINT (Ctrl+C) and SIGTERM (cluster preemption, ``kill``) stop training after the current
    batch, never in the middle of an optimiser step: Lightning's SIGTERM flag is raised for both,
    its loop stops, and this callback writes ``last.ckpt`` (atomically, like every checkpoint) with
    the loop position, RNG states and data position, so ``ckpt_path=last`` resumes the same run.
    A second Ctrl+C interrupts at once."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.signum: int | None = None
        self.saved: str | None = None
        self.active = False
        self._old: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal
        import threading

        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self.active = True
        old_int, old_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

        def on_sigint(signum: int, frame: Any) -> None:
            # outside this fit (Lightning may reinstall this handler after teardown), or the second Ctrl+C
            if not self.active or trainer.received_sigterm:
                _previous(old_int, signum, frame)
                return
            self.signum = signum
            trainer._signal_connector.received_sigterm = True  # Lightning stops after this batch
            print("\ninterrupted: stopping after this batch and saving a checkpoint (Ctrl+C again to abort at once)",
                  flush=True)

        def on_sigterm(signum: int, frame: Any) -> None:
            if not self.active:
                _previous(old_term, signum, frame)
                return
            self.signum = self.signum or signum
            if callable(old_term):
                old_term(signum, frame)  # Lightning's handler, when it was installed first
            trainer._signal_connector.received_sigterm = True  # Lightning stops after this batch

        self._old = (old_int, old_term)
        signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGTERM, on_sigterm)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal

        self.active = False
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old[0])
            signal.signal(signal.SIGTERM, self._old[1])
            self._old = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        try:
            if isinstance(exception, SIGTERMException):
                import os

                path = os.path.join(self.dirpath, "last.ckpt")
                trainer.save_checkpoint(path)
                self.saved = path
        finally:  # Lightning skips the teardown hook after an exception: give Ctrl+C back now
            self.teardown(trainer, pl_module, "fit")


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


def _grouped(pl_module: L.LightningModule) -> bool:
    """Whether the module's training steps take lists of micro-batches (steps per execution)."""
    return getattr(pl_module, "steps_per_execution", 1) > 1


class Throughput(L.Callback):
    """Wall-clock training speed: steps/s and items/s (tokens for LMs, images for CNNs) after
    ``warmup`` steps (with steps per execution, from the first group that starts after them),
    logged each epoch as ``perf/steps_per_sec`` and ``perf/items_per_sec`` (not with ``log_rates=False``:
    a timer only). Time spent in validation loops is left out (``exclude_validation``), as
    fairseq's words/s leaves it out; checkpoint writing, logging and the loop's own hooks stay in.

    On a CUDA device the host runs ahead of the GPU, so a clock read at a step's end would miss the
    queued work: the timer waits for the device (``torch.cuda.synchronize``) where a reading must hold
    all the work before it -- when the clock starts, when validation starts and ends, and at the
    run's last training step (``max_steps``, or the last batch of ``max_epochs``) -- and nowhere else,
    so the steps it times keep their overlap of host and device."""

    def __init__(self, warmup: int = 5, exclude_validation: bool = True, log_rates: bool = True):
        self.warmup = warmup
        self.exclude_validation = exclude_validation
        # False: a timer only (benchmarks), adding no logging of its own to what it times (not `log`:
        # Lightning gives every callback a `log` attribute, the module's log method)
        self.log_rates = log_rates
        self.seen = 0  # batches started (the warm-up is counted in batches)
        self.steps = 0
        self.items = 0
        self.start: float | None = None
        self.elapsed = 0.0
        self.paused = 0.0  # seconds of validation inside the timed window
        self.in_steps = 0.0  # seconds from on_train_batch_start to on_train_batch_end (a group's, with K)
        self._val_start: float | None = None
        self._batch_start: float | None = None
        self._cuda = False  # the module is on a CUDA device: clock readings that close a span wait for it

    @staticmethod
    def _on_cuda(pl_module: L.LightningModule) -> bool:
        return pl_module.device.type == "cuda"

    def _drain(self, pl_module: L.LightningModule) -> None:
        """Wait until the device has done the work queued so far (CUDA only; a no-op elsewhere)."""
        if self._cuda:
            import torch

            torch.cuda.synchronize(pl_module.device)

    @staticmethod
    def _last_step(trainer: L.Trainer) -> bool:
        """Whether the training step that just ended is the run's last one: ``max_steps`` reached, or
        the last batch of the fit's last epoch."""
        return _training_ends(trainer) and (trainer.is_last_batch or _max_steps_reached(trainer))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        import time

        # counted in batches, not global steps (a GAN's global step counts both of its optimisers);
        # with steps per execution a training step takes a list of K batches, and the clock starts
        # at the first group that begins after the warm-up: a group that straddles it (a first group
        # of K >= warmup batches holds the cold first step) is not timed
        if self.start is None and self.seen >= self.warmup:
            self._cuda = self._on_cuda(pl_module)
            self._drain(pl_module)  # the warm-up's queued work is not the timed steps'
            self.start = time.perf_counter()
        self.seen += len(batch) if _grouped(pl_module) else 1
        if self.start is not None:
            self._batch_start = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if self.exclude_validation and self.start is not None and not trainer.sanity_checking:
            self._drain(pl_module)  # the training steps' queued work is theirs, not validation's
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if self._val_start is not None:
            self._drain(pl_module)
            self.paused += time.perf_counter() - self._val_start
            self._val_start = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        import time

        if self.start is None:
            return
        # a group cut short by max_steps trains on its first micro-batches only
        for micro in batch[: getattr(pl_module, "last_group_size", len(batch))] if _grouped(pl_module) else [batch]:
            self.steps += 1
            first = micro[1] if isinstance(micro, (tuple, list)) and len(micro) > 1 else micro
            self.items += int(first.numel()) if hasattr(first, "numel") else 0
        if self._cuda and self._last_step(trainer):
            self._drain(pl_module)  # the last reading holds all the timed work
        now = time.perf_counter()
        if self._batch_start is not None:
            self.in_steps += now - self._batch_start
        self.elapsed = now - self.start - self.paused

    @property
    def steps_per_sec(self) -> float:
        return self.steps / self.elapsed if self.elapsed else float("nan")

    @property
    def items_per_sec(self) -> float:
        return self.items / self.elapsed if self.elapsed else float("nan")

    @property
    def between_steps_ms(self) -> float:
        """Milliseconds per step spent outside the training steps (groups, with steps per execution):
        epoch ends, checkpoints, the loader's start of an epoch, the loop's own hooks; validation
        left out. What a larger K cannot amortise."""
        return 1000 * (self.elapsed - self.in_steps) / self.steps if self.steps else float("nan")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.elapsed and self.log_rates:
            pl_module.log("perf/steps_per_sec", self.steps_per_sec)
            pl_module.log("perf/items_per_sec", self.items_per_sec)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` for runs that resume into a new run folder.

    Lightning restores the best-so-far score and top-k bookkeeping only when the checkpoint folder
    is unchanged; seqgen resumes into a fresh run folder, so this restores them regardless (the
    test after fit then picks the same best checkpoint as an uninterrupted run would), and it
    never deletes a file outside its own folder: an earlier run's checkpoints stay as they were.

    ``min_interval_s`` (for a checkpoint without a monitor, such as ``last.ckpt``): an epoch end
    less than that many seconds after this callback's previous save is skipped, unless training
    ends with that epoch (``max_epochs``, ``max_steps``, a stop requested by early stopping or a
    timer): on an epoch of a fraction of a second, a save every epoch would cost more than the
    epoch. The decision is rank 0's, broadcast, so every DDP rank takes part in the same saves.

    ``write_within_s`` (for a checkpoint with a monitor: the best model so far): a new best is
    copied at once and written within that many seconds (seqgen's checkpoint writer, see
    ``seqgen.train.AtomicCheckpointIO``), before any other checkpoint and by the end of the run; a
    best that a better one replaces sooner is never written. While a model improves at every
    epoch of a fraction of a second, that is one write every few seconds instead of one an epoch.
    """

    def __init__(self, *args: Any, min_interval_s: float = 0.0, write_within_s: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name, value in (("min_interval_s", min_interval_s), ("write_within_s", write_within_s)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        self.min_interval_s = float(min_interval_s)
        self.write_within_s = float(write_within_s)
        self._saved_at: float | None = None
        self._decided = False  # within an epoch end whose min_interval_s check has been made

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        deferring = getattr(trainer.strategy.checkpoint_io, "deferring", None)
        if not (self.write_within_s and self.monitor is not None and deferring is not None):
            super()._save_checkpoint(trainer, filepath)
            return
        with deferring(self.write_within_s):
            super()._save_checkpoint(trainer, filepath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a save that min_interval_s skips is decided before Lightning copies the logged values for it,
        # once: the save it goes on to make does not ask (and broadcast) again
        if self._too_soon(trainer):
            self._flush_due(trainer)
            return
        self._decided = True
        try:
            super().on_train_epoch_end(trainer, pl_module)
        finally:
            self._decided = False

    def _too_soon(self, trainer: L.Trainer) -> bool:
        """A ``last.ckpt``-style save (no monitor) within ``min_interval_s`` of the previous one, and
        training does not end with this epoch: skipped (rank 0 decides, every rank follows)."""
        import time

        if not (self.min_interval_s and self.monitor is None) or self._decided:
            return False
        recent = self._saved_at is not None and time.monotonic() - self._saved_at < self.min_interval_s
        return bool(trainer.strategy.broadcast(recent and not _training_ends(trainer), src=0))

    @staticmethod
    def _flush_due(trainer: L.Trainer) -> None:
        flush_due = getattr(trainer.strategy.checkpoint_io, "flush_due", None)
        if flush_due is not None and trainer.is_global_zero:
            flush_due()  # a deferred best whose time is up (checked at every epoch end)

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        import time

        self._flush_due(trainer)
        if self._too_soon(trainer):
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        self._saved_at = time.monotonic()

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, Any]:
        """Lightning's, with each logged value copied by ``Tensor.clone`` instead of ``copy.deepcopy``
        of the whole dict: a deepcopy takes tens of microseconds a tensor through Python's protocol,
        for every metric, for each checkpoint callback at every epoch end (about 0.5 ms an epoch for
        the digits GAN's 15 values), skipped save or not. Anything but tensors: Lightning's own."""
        import torch

        metrics = trainer.callback_metrics
        if not all(isinstance(v, torch.Tensor) for v in metrics.values()):
            return super()._monitor_candidates(trainer)
        candidates = {k: v.detach().clone() for k, v in metrics.items()}
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        self.best_model_score = state_dict["best_model_score"]
        self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        self.best_k_models = state_dict.get("best_k_models", self.best_k_models)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        import os

        if self.dirpath and os.path.dirname(os.path.abspath(filepath)) == os.path.abspath(self.dirpath):
            super()._remove_checkpoint(trainer, filepath)


def _training_ends(trainer: L.Trainer) -> bool:
    """Whether the epoch now ending is the last of the fit (as far as a callback can tell before
    Lightning's loop decides; a wrong yes only costs a save)."""
    max_epochs = trainer.max_epochs
    return bool(trainer.should_stop or (max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs)
                or _max_steps_reached(trainer))


def _max_steps_reached(trainer: L.Trainer) -> bool:
    max_steps = trainer.max_steps
    return max_steps not in (None, -1) and trainer.global_step >= max_steps


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary without the FLOPs column and total (all zeros unless a
    model declares ``example_input_array``), its totals on one line. ``seqgen.train.run`` installs
    it when ``trainer.enable_model_summary`` is on."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(f"{get_human_readable_count(trainable_parameters)} trainable parameters"
                      + (f", {get_human_readable_count(frozen)} frozen" if frozen else "")
                      + f", {model_size:.2f} MB")


@functools.cache
def _speed_column_class() -> type:
    """Lightning's speed column with a rate from a single update (made on first use: rich loads with
    the bar)."""
    from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn
    from rich.text import Text

    class SpeedColumn(ProcessingSpeedColumn):
        def render(self, task: Any) -> Any:
            speed = task.speed
            seconds = task.finished_time or task.elapsed  # a finished bar's clock stops when it fills
            if speed is None and task.completed and seconds:
                speed = task.completed / seconds
            return Text(f"{speed or 0.0:>.2f}it/s", style=self.style)

    return SpeedColumn


def speed_column(style: Any) -> Any:
    return _speed_column_class()(style)


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar that reads the training values at its refresh rate, not at
    every step. seqgen's models log per-step training values with ``prog_bar=False`` -- Lightning
    turns every ``prog_bar`` value into a Python number after every training step, a host sync per
    step on a GPU -- and this bar shows the latest of those named in ``show`` (from the trainer's
    callback metrics, still tensors) every ``refresh_rate`` steps and at each epoch end.

    With steps per execution the training bar counts optimiser steps (batches), not Lightning's
    groups of K: an epoch of 41 batches at K=64 reads 41/41 and a rate in steps/s, not 1/1 at
    0.00 it/s; it moves a group at a time, and reads the values every ``refresh_rate`` groups."""

    def __init__(self, refresh_rate: int = 5, leave: bool = False,
                 show: tuple[str, ...] = ("train/loss", "train/d_loss", "train/g_loss", "train/free_energy_gap"),
                 **kwargs: Any):
        super().__init__(refresh_rate=refresh_rate, leave=leave, **kwargs)
        self.show = tuple(show)
        self._due = True

    def configure_columns(self, trainer: L.Trainer) -> list:
        """Lightning's columns, its speed column replaced by one that falls back to the average since
        the bar's start while rich has too few updates for its own estimate (an epoch of one group, a
        validation of one batch): it read 0.00 it/s there."""
        from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn

        return [speed_column(c.style) if type(c) is ProcessingSpeedColumn else c
                for c in super().configure_columns(trainer)]

    @property
    def total_train_batches(self) -> int | float:
        """The epoch's optimiser steps when training steps take groups of K batches (the loader's
        batches, within Lightning's limit on groups and what ``max_steps`` leaves); else Lightning's."""
        trainer = self.trainer
        loader = trainer.train_dataloader
        k = getattr(trainer.lightning_module, "steps_per_execution", 1)
        groups = trainer.num_training_batches
        if k <= 1 or not hasattr(loader, "batches_per_epoch") or groups == float("inf"):
            return super().total_train_batches
        total = min(loader.batches_per_epoch(), groups * k)
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            total = min(total, trainer.max_steps - trainer.global_step)
        return total

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._due = (batch_idx + 1) % max(int(self.refresh_rate), 1) == 0
        done = batch_idx + 1
        if _grouped(pl_module):  # the steps of the groups so far (every group but an epoch's last holds K)
            done = batch_idx * pl_module.steps_per_execution + getattr(pl_module, "last_group_size", len(batch))
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)  # Lightning shows batch_idx + 1
        finally:
            self._due = True

    def _update_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._due:
            super()._update_metrics(trainer, pl_module)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        values = trainer.callback_metrics
        for key in self.show:
            if key not in items and key in values:
                items[key] = float(values[key])  # read here, at the bar's refresh
        return items


class FiniteGuard(L.Callback):
    """Asks the model whether a loss went NaN/inf since its last check (``check_finite``, one read of
    a device value) before any checkpoint is written, before each validation and at each training
    epoch's end: the models note non-finite losses on the device instead of reading every loss on
    the host."""

    @staticmethod
    def _check(pl_module: L.LightningModule) -> None:
        check = getattr(pl_module, "check_finite", None)
        if check is not None:
            check()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._check(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(pl_module)  # before weights that a NaN has reached are evaluated or sampled from

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(pl_module)
