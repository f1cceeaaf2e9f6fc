"""``run(cfg) -> metrics``: the one training entry point behind ``scripts/train.py``.

Builds the data module, the LightningModule (given the data module's ``dims`` such as
``vocab_size``), callbacks, loggers and the Trainer from a composed Hydra config; fits; tests;
prints and saves the final metrics. Importable: tests and sweepers call it in-process.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from seqgen import fast_log
from seqgen.callbacks import CheckpointExtras, EpochSeed, FiniteGuard, GracefulInterrupt, ModelSummary
from seqgen.checkpoints import find_checkpoint, load_checkpoint, module_from_checkpoint
from seqgen.config import validate
from seqgen.console import quiet_console
from seqgen.contracts import (
    ExecutesSteps,
    HasCheckpointExtras,
    HasEvalClassifier,
    HasUnusedParameters,
    Transferable,
)
from seqgen.errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted
from seqgen.utils import build, check_keys


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically, and off the training loop's path.

    Each checkpoint is serialised at once (it is the state of that moment), then written to
    ``<name>.tmp``, fsynced and renamed into place: a kill or a full disk during a save never leaves a
    truncated ``last.ckpt`` as the only copy. With ``background`` (the default) the write, fsync and
    rename happen on one writer thread, in order, while training goes on (while the attached trainer
    runs; a save after it is written before it returns) -- on a digits-size recipe they are half of a
    save's 4-10 ms, once or twice an epoch. A removal (the previous best checkpoint's) is queued
    behind the pending writes on the same thread. Every pending write and removal is finished
    before a checkpoint is loaded and when the trainer tears down (end of fit, an error, an
    interrupt); a failed write raises :class:`CheckpointError` there or at the next save.

    Saves made inside :meth:`deferring` (``RunCheckpoint(write_within_s=...)``: the best model so
    far) are only copied (tensors cloned, containers copied: a fraction of serialising) and written
    within that many seconds -- at the first save, removal, epoch end (:meth:`flush_due`) after the
    time is up, before any other checkpoint is written (a ``last.ckpt`` never names a best file
    that is not there), before a load, and when the trainer tears down. A deferred one that is
    removed before then (a better model came) is never serialised or written."""

    def __init__(self, background: bool = True, max_pending: int = 2):
        super().__init__()
        self.background = background
        self.max_pending = max_pending
        self._executor: Any = None
        self._pending: list[Any] = []
        self._trainer: Any = None  # a weak reference, from attach()
        self._defer_s = 0.0
        self._deferred: dict[Path, tuple[dict[str, Any], float]] = {}  # path -> (copy, due by), in save order

    @contextlib.contextmanager
    def deferring(self, seconds: float):
        """Within the block, saves are deferred by up to ``seconds`` (while the trainer runs)."""
        before, self._defer_s = self._defer_s, float(seconds)
        try:
            yield
        finally:
            self._defer_s = before

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        import time

        path = Path(path)
        if self._defer_s > 0 and self._in_background():
            self._deferred.pop(path, None)  # re-inserted last: the save order is kept
            self._deferred[path] = (_copy_state(checkpoint), time.monotonic() + self._defer_s)
            return
        self.flush_deferred()
        self._write(checkpoint, path)

    def _write(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Serialise ``checkpoint`` now; write it on the writer thread while the trainer runs,
        otherwise at once, after the pending writes."""
        import io

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        if not self._in_background():
            self.wait()
            _write_atomically(buffer, path)
            return
        self._submit(_write_atomically, buffer, path)

    def flush_deferred(self) -> None:
        """Serialise the deferred checkpoints, in the order they were saved, and queue their writes."""
        deferred, self._deferred = self._deferred, {}
        for path, (state, _) in deferred.items():
            self._write(state, path)

    def flush_due(self) -> None:
        """:meth:`flush_deferred` once the first deferred checkpoint's time is up."""
        import time

        if self._deferred and min(due for _, due in self._deferred.values()) <= time.monotonic():
            self.flush_deferred()

    def _submit(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread, after every write or removal submitted before it.
        At most ``max_pending`` writes (each holds a serialised checkpoint) wait at a time."""
        if any(f.done() and f.exception() is not None for f in self._pending):
            self.wait()  # an earlier write or removal failed: raise it here
        self._pending = [f for f in self._pending if not f.done()]
        if fn is _write_atomically and sum(f.seqgen_write for f in self._pending) >= self.max_pending:
            self.wait()
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqgen-checkpoint")
        future = self._executor.submit(fn, *args)
        future.seqgen_write = fn is _write_atomically
        self._pending.append(future)

    def attach(self, trainer: L.Trainer) -> None:
        """Write in the background only while ``trainer`` runs (a ``fit``): a ``trainer.save_checkpoint``
        called after it returns with the file in place."""
        import weakref

        self._trainer = weakref.ref(trainer)

    def _in_background(self) -> bool:
        from lightning.pytorch.trainer.states import TrainerStatus

        trainer = self._trainer() if self._trainer is not None else None
        return self.background and (trainer is None or trainer.state.status == TrainerStatus.RUNNING)

    def wait(self) -> None:
        """Write the deferred checkpoints and finish every pending write; raise the first one's error."""
        self.flush_deferred()
        pending, self._pending = self._pending, []
        errors = [e for e in (f.exception() for f in pending) if e is not None]
        if errors:
            raise errors[0]

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self._deferred.pop(Path(path), None)  # superseded before it was written: never written
        self.flush_due()
        if self._executor is not None and self._in_background():
            # queued behind the pending writes on the one writer thread: a file is never removed
            # before a write to it that was asked for earlier, and the loop does not wait for the
            # fsync of the checkpoint that replaces it (the best model's, every time it improves)
            self._submit(super().remove_checkpoint, path)
            return
        self.wait()
        super().remove_checkpoint(path)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


_SHARED_TYPES = frozenset({bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device})


def _copy_state(obj: Any) -> Any:
    """A copy of a checkpoint dict that later training does not change: tensors cloned, dicts,
    lists and tuples rebuilt, immutable values shared, anything else deep-copied. (Called at every
    new best model, on a few hundred entries: type checks first, no import per call.)"""
    kind = type(obj)
    if kind in _SHARED_TYPES:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if kind is dict or kind is OrderedDict:
        return kind([(k, _copy_state(v)) for k, v in obj.items()])
    if kind is list or kind is tuple:
        return kind([_copy_state(v) for v in obj])
    return copy.deepcopy(obj)


def _write_atomically(data: Any, path: Path) -> None:
    """``data`` (a serialised checkpoint in a ``BytesIO``) to ``path`` through ``<name>.tmp``: written,
    fsynced, renamed into place. On an OS error the temporary file is removed and the previous file
    stays as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, permissions: say so; the previous file is untouched
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else "no earlier copy existed"
        raise CheckpointError(f"could not write checkpoint {path}: {e.strerror or e} ({kept}); "
                              "free disk space or point paths.output_dir elsewhere") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _is_rank_zero() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return build(_plain(cfg.data), "data")


def build_model(cfg: DictConfig, dims: dict[str, Any]) -> L.LightningModule:
    """The model, offered the data module's ``dims``: each goes to the model where its constructor
    names it (``vocab_size``, ``num_classes``, ``in_channels``, ...)."""
    return build(_plain(cfg.model), "model", offered=dims)


def _build_group(cfg: DictConfig, group: str) -> list[Any]:
    """The callbacks or loggers of ``cfg[group]``: one object per entry with a ``_target_``."""
    node = cfg.get(group) or {}
    return [build(_plain(conf), f"{group}.{name}") for name, conf in node.items()
            if conf is not None and "_target_" in conf]


def newest_last_checkpoint(cfg: DictConfig, task: str) -> str | None:
    """The newest ``<log_dir>/<task>/*/checkpoints/last.ckpt`` of a run other than this one."""
    current = Path(cfg.paths.output_dir).resolve()
    found = [p for p in (Path(cfg.paths.log_dir) / task).glob("*/checkpoints/last.ckpt")
             if p.parent.parent.resolve() != current]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def resolve_ckpt_path(ckpt_path: str | None, cfg: DictConfig) -> str | None:
    """``ckpt_path``: a .ckpt file, a run folder (its ``checkpoints/last.ckpt``), or ``last``
    (the newest ``last.ckpt`` of this task under ``paths.log_dir``)."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        newest = newest_last_checkpoint(cfg, str(cfg.task_name))
        if newest is None:
            raise CheckpointError(f"ckpt_path=last: no {Path(cfg.paths.log_dir) / str(cfg.task_name)}/*/checkpoints/"
                                  f"last.ckpt from an earlier run of {cfg.task_name!r}")
        return newest
    path = find_checkpoint(ckpt_path)
    task = load_checkpoint(path).get("seqgen", {}).get("task")
    if task and task != cfg.get("task_name"):
        raise CheckpointError(f"{path} was written by task {task!r}, not {cfg.get('task_name')!r}")
    return str(path)


def resolve_reference(ref: str, cfg: DictConfig | None, key: str) -> str:
    """A checkpoint reference: a ``.ckpt`` file, a run folder, or ``last:<task>`` -- the newest
    ``last.ckpt`` of that task under ``paths.log_dir`` (chains recipes such as DBN pretraining
    then fine-tuning)."""
    ref = str(ref)
    if not ref.startswith("last:"):
        return ref
    task = ref[len("last:"):]
    if cfg is None:
        raise CheckpointError(f"{key}={ref}: 'last:<task>' needs the run's config (paths.log_dir)")
    newest = newest_last_checkpoint(cfg, task)
    if newest is None:
        raise CheckpointError(f"{key}={ref}: no {Path(cfg.paths.log_dir) / task}/*/checkpoints/last.ckpt; "
                              f"train it first: python scripts/train.py task={task}")
    return newest


def apply_init_from(model: L.LightningModule, resuming: bool, cfg: DictConfig | None = None,
                    datamodule: L.LightningDataModule | None = None) -> None:
    """Transfer learning: load the backbone named by the model's ``init_from`` (unless resuming,
    when the resumed checkpoint already holds the trained weights). Text models must share the
    source's tokenizer: embeddings of another vocabulary would be rows of the wrong words."""
    if not isinstance(model, Transferable) or not model.init_from or resuming:
        return
    source = str(model.init_from)
    if source.startswith(("torchvision:", "timm:")):
        from seqgen.checkpoints import pretrained_state

        model.loaded_from_init = model.load_backbone_in_order(pretrained_state(source), source)
        return
    path = resolve_reference(source, cfg, "model.init_from")
    ckpt = load_checkpoint(path)
    theirs = (ckpt.get("seqgen") or {}).get("tokenizer")
    ours = datamodule.checkpoint_extras().get("tokenizer") if isinstance(datamodule, HasCheckpointExtras) else None
    if theirs is not None and ours is not None and theirs != ours:
        raise CheckpointError(f"model.init_from={path}: that run's tokenizer ({theirs.get('kind')}) differs from this "
                              "data's; text transfer needs the same vocabulary (same tokenizer settings and "
                              "training text)")
    model.loaded_from_init = model.load_backbone_state(ckpt["state_dict"], str(path))


def attach_eval_classifier(model: L.LightningModule, dims: dict[str, Any], cfg: DictConfig | None = None) -> None:
    """Generative models with ``eval_classifier`` (a seqgen Classifier checkpoint) get that
    classifier, frozen, for their sample-quality metrics (it is not part of their checkpoints)."""
    if not isinstance(model, HasEvalClassifier) or not model.eval_classifier:
        return
    ref = model.eval_classifier
    from seqgen.models import Classifier

    path = resolve_reference(ref, cfg, "model.eval_classifier")
    ckpt = load_checkpoint(path)
    extras = ckpt.get("seqgen", {})
    if extras.get("model_class") != "Classifier":
        raise CheckpointError(f"model.eval_classifier={path} holds a {extras.get('model_class', 'non-seqgen')} model, "
                              "not a Classifier")
    theirs = extras.get("dims", {})
    for k in ("in_channels", "image_size"):
        if k in theirs and k in dims and list(_as_list(theirs[k])) != list(_as_list(dims[k])):
            raise CheckpointError(f"model.eval_classifier={path} was trained on {k}={theirs[k]}, this data has {dims[k]}")
    clf = module_from_checkpoint(Classifier, ckpt).requires_grad_(False)  # the checkpoint read above
    clf.input_norm = extras.get("normalize_stats")
    model.feature_classifier = [clf]


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


@rank_zero_only
def _report(metrics: dict[str, float], output_dir: Path, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, min_width=len(title) + 4)  # a title wider than the columns would wrap
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in sorted(metrics):
        # Lightning names a value logged per step and per epoch three ways (x, x_step, x_epoch): the
        # table shows x, the epoch's; metrics.json keeps all three
        base = k.removesuffix("_step").removesuffix("_epoch")
        if base != k and base in metrics:
            continue
        table.add_row(k, f"{metrics[k]:.4f}")
    Console().print(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


def last_checkpoint_path(trainer: L.Trainer) -> str:
    """The newest ``last.ckpt`` written by any checkpoint callback of ``trainer`` ('' if none)."""
    paths = []
    for cb in trainer.checkpoint_callbacks:
        for p in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", "") if cb.monitor is None else ""):
            if p and Path(p).is_file():
                paths.append(p)
    return max(paths, key=lambda p: Path(p).stat().st_mtime) if paths else ""


def _check_writable(folder: Path) -> None:
    """Fail before any data is read or model built when the run folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"the run folder {folder} is not writable ({e.strerror or e}); "
                          "set paths.output_dir (or hydra.run.dir) to a folder you can write") from e


def _last_checkpoint_dir(callbacks: list[Any], output_dir: Path) -> str:
    """Where ``last.ckpt`` lives: the folder of the configured every-epoch checkpoint callback."""
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and getattr(cb, "filename", None) == "last" and cb.dirpath:
            return str(cb.dirpath)
    return str(output_dir / "checkpoints")


class _TrainingStarted(L.Callback):
    """Whether fit trained at all: Lightning skips ``on_train_start`` when a resumed run is already
    at its end."""

    fired = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fired = True


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


def check_config(cfg: DictConfig) -> None:
    """Before anything is read or written: no required value missing, every value allowed, and
    every key of every ``_target_`` mapping accepted by its target (a misspelt key names itself)."""
    if isinstance(cfg, DictConfig):
        user = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        missing = sorted(OmegaConf.missing_keys(user))
        if missing:
            raise ConfigError(f"missing required value(s): {', '.join(missing)} (set them as key=value)")
        validate(OmegaConf.to_container(user, resolve=False))
    else:
        validate(cfg)
    for group in ("data", "model", "trainer", "callbacks", "logger"):
        check_keys(_plain(cfg.get(group)), group)


def prepare_data(datamodule: L.LightningDataModule) -> None:
    """Download/verify on one process per machine (Lightning's rule; DDP ranks are separate
    processes that each run this function). ``dims`` then reads only what the model's sizes need
    (nothing for images; the text and its vocabulary for text), and Lightning's ``setup`` the rest."""
    if _is_rank_zero():
        datamodule.prepare_data()


def build_model_for(cfg: DictConfig, datamodule: L.LightningDataModule, resuming: bool) -> L.LightningModule:
    """The model for this data, with its transfer source loaded and its evaluation classifier
    attached (both named by the model: ``init_from``, ``eval_classifier``)."""
    dims = datamodule.dims
    model = build_model(cfg, dims)
    apply_init_from(model, resuming=resuming, cfg=cfg, datamodule=datamodule)
    attach_eval_classifier(model, dims, cfg)
    return model


def _grouped_trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """With ``steps_per_execution`` K > 1 Lightning counts groups of K batches: an integer
    ``limit_train_batches`` becomes groups (the batch limit itself is applied by the loader). The
    training values are logged by the groups that cross a multiple of ``log_every_n_steps`` (the
    mean of their K steps; the logger's step axis stays in optimiser steps): the model decides at
    the end of each group (:mod:`seqgen.models.execution`) and sets Lightning's own setting, so it
    starts at 1 here."""
    k = int(cfg.get("steps_per_execution", 1))
    if k == 1:
        return {}
    settings: dict[str, Any] = {"log_every_n_steps": 1}
    limit = _batch_limit(cfg)
    if limit is not None:
        settings["limit_train_batches"] = math.ceil(limit / k)
    return settings


def _precision_setting(cfg: DictConfig) -> dict[str, Any]:
    """``trainer.precision: auto`` (the recipes that gain from bfloat16): ``bf16-mixed`` where the
    accelerator computes in bf16 natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX),
    ``32-true`` elsewhere -- emulated bf16 on a CPU without those units runs several times slower
    than fp32. Said once on the console; any other value is Lightning's, as given."""
    if str(cfg.trainer.get("precision")) != "auto":
        return {}
    from seqgen.nets.hardware import auto_precision

    chosen = auto_precision(cfg.trainer.get("accelerator", "auto"))
    why = "this accelerator computes in bfloat16 natively" if chosen.startswith("bf16") else "no bfloat16 units here"
    _say(f"trainer.precision=auto: {chosen} ({why})")
    return {"precision": chosen}


def _batch_limit(cfg: DictConfig) -> int | None:
    """``trainer.limit_train_batches`` when it is a number of batches (an int, not a fraction)."""
    limit = cfg.trainer.get("limit_train_batches")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def use_steps_per_execution(cfg: DictConfig, model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """The recipe's ``steps_per_execution`` K: the model runs K optimiser steps per ``training_step``
    and the training loader serves K batches at a time (:mod:`seqgen.models.execution`)."""
    import functools

    from seqgen.data.grouping import group_loader
    from seqgen.data.sharding import resume_skip

    k = cfg.get("steps_per_execution", 1)
    if k == 1:
        return
    if not isinstance(model, ExecutesSteps):
        raise ConfigError(f"steps_per_execution={k}: {type(model).__name__} does not run grouped steps "
                          "(a seqgen model, seqgen.models.SeqgenModule, does); set steps_per_execution=1")
    if (cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
        raise ConfigError(f"steps_per_execution={k} makes one optimiser step per batch; it cannot be combined with "
                          f"trainer.accumulate_grad_batches={cfg.trainer.accumulate_grad_batches} (set one of them to 1)")
    model.use_steps_per_execution(int(k))
    model.log_every_n_steps = int(cfg.trainer.get("log_every_n_steps") or 50)  # Lightning's own default is 50
    limit = _batch_limit(cfg)
    original = datamodule.train_dataloader

    def resumed_at() -> int:  # batches of this epoch a mid-epoch resume has done (the readers skip them)
        return resume_skip(datamodule.trainer, limit or 0) if limit else 0

    @functools.wraps(original)
    def train_dataloader() -> Any:
        return group_loader(original(), int(k), limit, resumed_at)

    datamodule.train_dataloader = train_dataloader


@dataclass
class _RunParts:
    """What ``build_trainer`` makes and ``run`` uses afterwards."""

    trainer: L.Trainer
    loggers: list[Any]
    interrupt: GracefulInterrupt
    started: _TrainingStarted


def build_trainer(cfg: DictConfig, model: L.LightningModule, extra_callbacks: list[L.Callback] | tuple[L.Callback, ...],
                  output_dir: Path) -> _RunParts:
    """Callbacks (configured, the caller's, and seqgen's own), loggers and the Trainer."""
    callbacks = _build_group(cfg, "callbacks") + list(extra_callbacks)
    loggers = build_loggers(cfg)
    if not loggers:  # LearningRateMonitor needs a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if cfg.get("seed") is not None:
        callbacks.append(EpochSeed(cfg.seed))
    callbacks.append(FiniteGuard())  # before CheckpointExtras: a NaN stops the save before anything is written
    callbacks.append(CheckpointExtras(str(cfg.task_name)))
    if cfg.trainer.get("enable_model_summary", True) is not False and not cfg.trainer.get("fast_dev_run"):
        callbacks.append(ModelSummary(max_depth=1))  # Lightning's, without its all-zero FLOPs column
    interrupt, started = GracefulInterrupt(_last_checkpoint_dir(callbacks, output_dir)), _TrainingStarted()
    callbacks += [interrupt, started]
    overrides: dict[str, Any] = {}
    if isinstance(model, HasUnusedParameters) and model.ddp_unused_parameters and cfg.trainer.get("strategy") == "ddp":
        # a GAN's discriminator step leaves the generator without gradients: DDP must be told
        overrides["strategy"] = "ddp_find_unused_parameters_true"
    overrides.update(_grouped_trainer_settings(cfg))
    overrides.update(_precision_setting(cfg))
    if cfg.trainer.get("enable_progress_bar") is None and not any(isinstance(c, ProgressBar) for c in callbacks):
        # no bar configured (callbacks.progress_bar=null, callbacks=none): none at all, rather than
        # Lightning's default bar, which reads the bar's values and refreshes at every step
        overrides["enable_progress_bar"] = False
    checkpoint_io = AtomicCheckpointIO(background=not _uploads_checkpoints(loggers))
    trainer = build(_plain(cfg.trainer), "trainer", callbacks=callbacks, logger=loggers or False,
                    plugins=[checkpoint_io], **overrides)
    checkpoint_io.attach(trainer)
    trainer_cfg = {k: v for k, v in _plain(cfg.trainer).items() if k != "_target_"}
    if "precision" in overrides:  # trainer.precision=auto: the precision it chose
        trainer_cfg["precision"] = overrides["precision"]
    for lg in loggers:
        if hasattr(lg, "log_hyperparams"):
            # the model's own hyperparameters are logged by Lightning; add what chose the data and the trainer
            lg.log_hyperparams({"task_name": str(cfg.task_name), "seed": cfg.get("seed"),
                                "data": _plain(cfg.data), "trainer": trainer_cfg})
    return _RunParts(trainer, loggers, interrupt, started)


def _uploads_checkpoints(loggers: list[Any]) -> bool:
    """Whether a logger reads checkpoint files as they are saved (W&B, MLflow with ``log_model``):
    the files must then be on disk when the save returns."""
    return any(getattr(lg, "_log_model", False) for lg in loggers)


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers. An MLflow logger on a SQLite file is built, and its store, experiment
    and run opened, while holding that file's lock: concurrent first runs would otherwise race to
    create the schema (``duplicate column name``, alembic's ``Online migration expected to match one
    row``) or the experiment. A tracking server (``logger=mlflow_server``) serialises its writers."""
    import contextlib

    from lightning.pytorch.loggers import MLFlowLogger

    from seqgen.locks import locked

    stores = sorted({str(conf.get("tracking_uri"))[len("sqlite:///"):] for conf in (cfg.get("logger") or {}).values()
                     if conf is not None and str(conf.get("tracking_uri", "")).startswith("sqlite:///")})
    with contextlib.ExitStack() as held:
        for db in stores:
            held.enter_context(locked(db))
        loggers = _build_group(cfg, "logger")
        for lg in loggers:
            if isinstance(lg, MLFlowLogger) and _is_rank_zero():
                _open_mlflow(lg)  # schema, experiment and run created now (under the lock for SQLite)
    return loggers


def _open_mlflow(logger: Any, tries: int = 5) -> None:
    """Get or create the experiment and the run. Through a tracking server, two first runs can
    both find no experiment and both create it; the loser finds it on the next try."""
    from mlflow.exceptions import MlflowException

    for attempt in range(tries):
        try:
            _ = logger.experiment, logger.run_id
            return
        except MlflowException as e:
            if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS" or attempt == tries - 1:
                raise


def fit(cfg: DictConfig, parts: _RunParts, model: L.LightningModule, datamodule: L.LightningDataModule,
        ckpt_path: str | None) -> None:
    """``trainer.fit``, its faults turned into errors that say what was kept and how to go on."""
    trainer, interrupt = parts.trainer, parts.interrupt
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as e:
        last = last_checkpoint_path(trainer)
        raise NonFiniteLossError(f"{e} Last good checkpoint: {last or 'none was saved before the fault'}") from e
    except SIGTERMException as e:
        import signal

        signum = interrupt.signum or signal.SIGTERM
        where = interrupt.saved or "none (the interruption came before training started)"
        raise TrainingInterrupted(
            f"{signal.Signals(signum).name} at epoch {trainer.current_epoch}, global step {trainer.global_step}: "
            f"stopped after the batch, checkpoint {where}. Resume with: python scripts/train.py "
            f"task={cfg.task_name} ckpt_path=last (plus this run's overrides)", signum) from e
    if ckpt_path is not None and not parts.started.fired:  # the resumed run had already reached its end
        _say(f"ckpt_path={ckpt_path}: that run is complete (epoch {trainer.current_epoch}, global step "
             f"{trainer.global_step}, trainer.max_epochs={cfg.trainer.get('max_epochs')}); nothing left to train"
             + (", testing its best checkpoint" if cfg.get("test", True) else ""))


def test_checkpoint(cfg: DictConfig, trainer: L.Trainer, ckpt_path: str | None) -> str | None:
    """What the test split is evaluated with: after training, the best checkpoint (by ``monitor``;
    the weights in memory when no best was kept); without training, the ``ckpt_path`` given (or
    the weights as built)."""
    if not cfg.get("train", True):
        return ckpt_path or None
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return best or None


def _scalars(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}


def run(cfg: DictConfig, extra_callbacks: list[L.Callback] | tuple[L.Callback, ...] = ()) -> dict[str, float]:
    """Train (and test) the task described by ``cfg``; return the final metrics.
    ``extra_callbacks`` join the configured ones (e.g. a Throughput timer from Python)."""
    quiet_console()
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    _check_writable(output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))

    datamodule = build_datamodule(cfg)
    prepare_data(datamodule)
    model = build_model_for(cfg, datamodule, resuming=ckpt_path is not None)
    use_steps_per_execution(cfg, model, datamodule)
    parts = build_trainer(cfg, model, extra_callbacks, output_dir)
    with fast_log.installed():  # Lightning's own logging path is back when the run ends
        if cfg.get("train", True):
            fit(cfg, parts, model, datamodule, ckpt_path)
        metrics = _scalars(parts.trainer)
        if cfg.get("test", True):
            parts.trainer.test(model, datamodule=datamodule, ckpt_path=test_checkpoint(cfg, parts.trainer, ckpt_path),
                               weights_only=True, verbose=False)  # one table: ours
            metrics.update(_scalars(parts.trainer))
    _report(metrics, output_dir, f"{cfg.task_name}: final metrics")
    _finish_loggers(parts.loggers)
    return metrics


def _finish_loggers(loggers: list[Any]) -> None:
    from lightning.pytorch.loggers import WandbLogger  # importable without wandb itself

    for lg in loggers:  # a W&B run stays open (and swallows the next run in this process) until finished
        if isinstance(lg, WandbLogger) and _is_rank_zero():
            lg.experiment.finish()


def reproducible_blas(cfg: DictConfig, environ: dict[str, str] | None = None) -> bool:
    """With ``trainer.deterministic`` on, turn on MKL's strict conditional numerical reproducibility
    (``MKL_CBWR=AUTO,STRICT``) unless the user set ``MKL_CBWR`` already; True when it was set here.

    torch's CPU matmuls are MKL SGEMM calls, which by default may take different code paths from run
    to run (CNR off, dynamic threading); Intel's documented condition for bit-reproducible BLAS is CNR
    mode. MKL reads the variable at its first call, so this acts in a fresh process before any
    matmul, which is where ``scripts/train.py`` calls it (DDP workers inherit it). In a notebook, set
    ``MKL_CBWR`` before importing torch. Cost here: 5-20% slower fp32 matmuls."""
    environ = os.environ if environ is None else environ
    if not cfg.get("trainer", {}).get("deterministic") or "MKL_CBWR" in environ:
        return False
    environ["MKL_CBWR"] = "AUTO,STRICT"
    return True


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        # an evaluation-only run (train=false), or a resumed run that was already complete: no
        # training or validation metric was logged, so there is nothing to optimise
        if not cfg.get("train", True) or not any(k.startswith(("train/", "val/")) for k in metrics):
            return None
        raise ConfigError(f"optimized_metric {name!r} was not logged; logged: {', '.join(sorted(metrics))}")
    return metrics[name]
