"""Fast paths for Lightning's per-call Python: ``self.log``, its signature check, callback dispatch.

Every ``LightningModule.log`` call ends in ``_ResultCollection.log``, which calls
``_ResultMetric.to(value.device)``. That ``to`` rebuilds the metric's whole ``__dict__`` through
``apply_to_collection`` (about 0.15 ms per call on these CPUs) even when nothing has to move, which
is every call after the first on a one-device run. The digits VAE logs five values per training step
on a 1 ms step, so it spent about 0.75 ms per step there (``benchmarks/overhead.py``).

Nothing is patched on import. :func:`installed` is a context manager that ``seqgen.train.run``
enters for the length of one run and that restores Lightning's own ``to`` when the run ends, so
the user's own LightningModules trained outside ``run`` never see it. It installs only on the
Lightning versions it is tested on (``TESTED``; tests/test_fast_log.py holds the fast path to
Lightning's own results), and not at all with ``SEQGEN_FAST_LOG=0``.

The wrapper of ``_ResultMetric.to``: when it is asked for a plain device and every tensor
the metric holds (its states, defaults, a wrapped torchmetrics Metric's states) is already on
that device, it returns the metric as it is: the result the original gives (it moves only
tensors and Metrics, found through mappings, sequences and dataclasses). Anything else (a real
move, dtype arguments, nesting deeper than the walk goes) takes the original path.

And ``LightningModule.log``'s check, at every call in training, that ``training_step`` declares no
``dataloader_iter`` (``is_param_in_hook_signature``, an ``inspect.getfullargspec`` each time) is
answered once per function within the block. With both, a ``log`` call of the digits VAE at K=1
takes 109-111 us here against 148 with Lightning's own (``to``'s walk alone: 20 -> 12 us).

And Lightning's dispatch of a callback hook (``trainer.call._call_callback_hooks``) calls it only on the
callbacks that define it, without a profile block per callback, while the trainer's profiler is the
default no-op one (see :func:`_install_callback_dispatch`): the digits VAE at one step per execution
went from 2.05 to 1.89 ms a step here (a dozen callbacks, six hooks a step).

And the loops' check of the step hooks' ``dataloader_idx`` at the start of every validation run is
made once per hooks and verdict while it passes (:func:`_install_verify_cache`, 0.1 ms a validation).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import types
from collections.abc import Mapping
from typing import Any

import torch

_MAX_DEPTH = 8
TESTED = ("2.4", "2.5", "2.6")  # Lightning major.minor versions whose _ResultMetric this matches


class _Unsure(Exception):
    """The walk went deeper than ``_MAX_DEPTH``; let Lightning's own ``to`` decide."""


_LEAVES = frozenset({int, float, bool, str, bytes, complex, type(None), torch.device, torch.dtype, types.FunctionType,
                     types.MethodType, types.BuiltinFunctionType, functools.partial, type})


# containers checked for emptiness before a call: most of a metric's attributes are nn.Module's
# hook dicts, empty (a walk of a _ResultMetric makes 26 calls without this, about a third of its log)
_EMPTY_OK = frozenset({dict, list, tuple, set, frozenset, collections.OrderedDict})


def _all_on(obj: Any, device: torch.device, depth: int = 0) -> bool:
    """True when every tensor that Lightning's ``to`` would move is already on ``device``."""
    kind = type(obj)
    if kind in _LEAVES:
        return True
    if depth > _MAX_DEPTH:
        raise _Unsure
    if isinstance(obj, torch.Tensor):
        return obj.device == device
    if isinstance(obj, torch.nn.Module):  # a torchmetrics Metric (or a module inside one)
        if getattr(obj, "_device", device) != device:
            return False
        items = vars(obj).values()
    elif isinstance(obj, Mapping):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    else:
        # anything else is left alone by Lightning's apply_to_collection (it recurses only into
        # mappings, sequences and dataclasses, and moves only tensors and Metrics)
        return True
    for item in items:
        kind = type(item)
        if kind in _LEAVES or (kind in _EMPTY_OK and not item):  # an empty container holds nothing to move
            continue
        if kind is torch.Tensor:
            if item.device != device:
                return False
            continue
        if not _all_on(item, device, depth + 1):
            return False
    return True


def _as_device(args: tuple, kwargs: dict) -> torch.device | None:
    if kwargs or len(args) != 1 or not isinstance(args[0], (str, torch.device)):
        return None
    try:
        return torch.device(args[0])
    except RuntimeError:
        return None


def supported() -> bool:
    """Whether this Lightning is one the fast path is tested on (and not turned off)."""
    import lightning

    if os.environ.get("SEQGEN_FAST_LOG", "1") == "0":
        return False
    return ".".join(lightning.__version__.split(".")[:2]) in TESTED


@contextlib.contextmanager
def installed():
    """Within the block, ``_ResultMetric.to`` takes the fast path and the signature check is cached (on a
    supported Lightning); on leaving it, Lightning's own are back. Nested blocks share one installation."""
    ours = supported() and install()
    try:
        yield ours
    finally:
        if ours:
            uninstall()


_depth = 0


def install() -> bool:
    """Wrap ``_ResultMetric.to`` once; False when this Lightning has no such class."""
    try:
        from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric
    except ImportError:  # pragma: no cover - a Lightning without it
        return False
    global _depth
    _depth += 1
    if getattr(_ResultMetric.to, "_seqgen_fast", False):
        return True
    original = _ResultMetric.to

    def to(self, *args: Any, **kwargs: Any):
        device = _as_device(args, kwargs)
        if device is not None:
            try:
                if _all_on(vars(self), device):
                    return self
            except _Unsure:
                pass
        return original(self, *args, **kwargs)

    to._seqgen_fast = True  # type: ignore[attr-defined]
    to._seqgen_original = original  # type: ignore[attr-defined]
    to.__doc__ = original.__doc__
    _ResultMetric.to = to
    _install_signature_cache()
    _install_verify_cache()
    _install_callback_dispatch()
    return True


# the Lightning modules that import ``is_param_in_hook_signature`` and call it during a fit: the
# module's ``log`` (every call in training), the loops' kwargs for each training step and their
# checks at every validation (``dataloader_idx``, ``dataloader_iter``, ``batch_idx``)
_SIGNATURE_USERS = ("lightning.pytorch.core.module", "lightning.pytorch.loops.utilities",
                    "lightning.pytorch.loops.evaluation_loop", "lightning.pytorch.loops.training_epoch_loop")


def _install_signature_cache() -> None:
    """``LightningModule.log`` asks, at every call in training, whether ``training_step`` declares a
    ``dataloader_iter`` parameter: ``inspect.getfullargspec`` each time, about 25 us of a 150 us call
    here; the loops ask the same kind of question of the step functions at every training step and
    four times at every validation. The answer depends only on the function, so within the block it
    is looked up once per function (weakly keyed: a model's function is not kept alive by the cache)."""
    import weakref

    from lightning.pytorch.core import module

    original = module.is_param_in_hook_signature
    if getattr(original, "_seqgen_fast", False):
        return
    answers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def is_param_in_hook_signature(hook_fx: Any, param: str, explicit: bool = False, min_args: int | None = None) -> bool:
        # the function whose signature Lightning's reads: a decorated hook's own (``__wrapped__``); a bound
        # method's is its function's (``getfullargspec`` keeps the bound ``self``, which Lightning drops)
        fx = getattr(hook_fx, "__wrapped__", hook_fx)
        fx = getattr(fx, "__func__", fx)
        key = (param, explicit, min_args)
        try:
            known = answers.setdefault(fx, {})
        except TypeError:  # not weakly referenceable (a builtin): Lightning's own, every time
            return original(hook_fx, param, explicit, min_args)
        if key not in known:
            known[key] = original(hook_fx, param, explicit, min_args)
        return known[key]

    _put(_SIGNATURE_USERS, "is_param_in_hook_signature", original, is_param_in_hook_signature)


def _put(users: tuple[str, ...], name: str, original: Any, fast: Any) -> None:
    """Mark ``fast`` as seqgen's stand-in for ``original`` and put it in its place as ``name`` in each
    module of ``users`` that holds ``original`` under that name."""
    import importlib

    fast._seqgen_fast = True
    fast._seqgen_original = original
    for module_name in users:
        user = importlib.import_module(module_name)
        if getattr(user, name, None) is original:
            setattr(user, name, fast)


def _take_back(users: tuple[str, ...], name: str) -> None:
    """Put Lightning's own ``name`` back in each module of ``users`` that holds seqgen's stand-in."""
    import importlib

    for module_name in users:
        user = importlib.import_module(module_name)
        current = getattr(user, name, None)
        if getattr(current, "_seqgen_fast", False):
            setattr(user, name, current._seqgen_original)


# the loops that check, at every validation (test, prediction) run, the step hooks' ``dataloader_idx``
_VERIFY_USERS = ("lightning.pytorch.loops.evaluation_loop", "lightning.pytorch.loops.prediction_loop")


def _install_verify_cache() -> None:
    """At the start of every validation run Lightning checks that the step and batch hooks declare
    ``dataloader_idx`` as the number of loaders requires (``_verify_dataloader_idx_requirement``); a
    hook that declares it (Lightning's own batch hooks do, with a default) is then read again with
    ``inspect.signature``: about 0.1 ms a validation here. The outcome depends only on the hooks'
    functions, the loader count's verdict and the stage, so within the block a check that passed is
    not made again for the same ones; one that fails raises every time, as Lightning's."""
    from lightning.pytorch.loops import utilities

    original = getattr(utilities, "_verify_dataloader_idx_requirement", None)
    if original is None or getattr(original, "_seqgen_fast", False):
        return
    passed: set[tuple[Any, ...]] = set()

    def _verify_dataloader_idx_requirement(hooks: tuple[str, ...], is_expected: bool, stage: Any, pl_module: Any) -> None:
        functions = tuple(getattr(fx, "__func__", fx) for fx in (getattr(pl_module, hook, None) for hook in hooks))
        key = (tuple(hooks), bool(is_expected), stage, functions)
        try:
            if key in passed:
                return
        except TypeError:  # something unhashable: Lightning's check, every time
            original(hooks, is_expected, stage, pl_module)
            return
        original(hooks, is_expected, stage, pl_module)
        passed.add(key)  # reached only when the check passed

    _put(_VERIFY_USERS, "_verify_dataloader_idx_requirement", original, _verify_dataloader_idx_requirement)


def _overrides(kind: type, hook: str, cache: dict[tuple[type, str], bool]) -> bool:
    """Whether the callback class ``kind`` defines ``hook`` other than as ``Callback``'s own (a no-op)."""
    key = (kind, hook)
    answer = cache.get(key)
    if answer is None:
        from lightning.pytorch.callbacks import Callback

        base = getattr(Callback, hook, None)
        answer = cache[key] = base is None or getattr(kind, hook, None) is not base
    return answer


# where Lightning's callback dispatch is looked up at every call (``call._call_callback_hooks(...)``)
_DISPATCH_USERS = ("lightning.pytorch.trainer.call",)


def _install_callback_dispatch() -> None:
    """Lightning calls each hook on every callback, each call inside a ``trainer.profiler.profile``
    block named by an f-string of the callback's ``state_key`` (the default profiler's block does
    nothing), whether or not the callback has that hook (``Callback``'s own is an empty method):
    fifteen callbacks and six hooks a training step, several dozen more at every epoch end. Within
    the block, with the default ``PassThroughProfiler`` and Lightning's debug log off, a hook is
    called on the callbacks that define it (on the class or the instance), in the same order, with
    the same arguments and ``_current_fx_name``; with any other profiler, Lightning's own dispatch
    and its per-callback profile blocks."""
    import logging

    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    original = call._call_callback_hooks
    if getattr(original, "_seqgen_fast", False):
        return
    cache: dict[tuple[type, str], bool] = {}
    monitoring = (call.EarlyStopping, call.Checkpoint)  # Lightning's "monitoring callbacks", as it names them

    def _call_callback_hooks(trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None,
                             **kwargs: Any) -> None:
        if type(trainer.profiler) is not PassThroughProfiler or call.log.isEnabledFor(logging.DEBUG):
            return original(trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks, **kwargs)
        pl_module = trainer.lightning_module
        if pl_module:
            prev_fx_name = pl_module._current_fx_name
            pl_module._current_fx_name = hook_name
        callbacks = trainer.callbacks
        if monitoring_callbacks is not None:  # Lightning's split of on_train_epoch_end (fit_loop)
            callbacks = [cb for cb in callbacks if isinstance(cb, monitoring) == monitoring_callbacks]
        for callback in callbacks:
            if _overrides(type(callback), hook_name, cache) or hook_name in vars(callback):
                fn = getattr(callback, hook_name)
                if callable(fn):
                    fn(trainer, trainer.lightning_module, *args, **kwargs)
        if pl_module:
            pl_module._current_fx_name = prev_fx_name

    _put(_DISPATCH_USERS, "_call_callback_hooks", original, _call_callback_hooks)


def uninstall() -> None:
    """Undo one :func:`install`; the last one puts Lightning's own ``to`` (and signature checks,
    callback dispatch) back."""
    global _depth
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    _depth = max(0, _depth - 1)
    if _depth > 0:
        return
    fast = _ResultMetric.__dict__.get("to")
    if getattr(fast, "_seqgen_fast", False):
        _ResultMetric.to = fast._seqgen_original
    _take_back(_SIGNATURE_USERS, "is_param_in_hook_signature")
    _take_back(_VERIFY_USERS, "_verify_dataloader_idx_requirement")
    _take_back(_DISPATCH_USERS, "_call_callback_hooks")
