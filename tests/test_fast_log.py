"""The no-op fast path for Lightning's ``_ResultMetric.to`` (seqgen/fast_log.py): installed only
for the length of a run (importing seqgen patches nothing), taken when nothing has to move, never
when something does, and a run logs exactly the same metrics with and without it."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.core import module as _module
from lightning.pytorch.loops import utilities as _loop_utilities
from lightning.pytorch.trainer import call as _call
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric, _Sync
from torchmetrics.classification import MulticlassAccuracy

from conftest import make_cfg
from seqgen import fast_log as _fast_log
from seqgen.train import run

LIGHTNINGS_TO = _ResultMetric.__dict__["to"]  # as Lightning defines it (tests import no seqgen before this)
LIGHTNINGS_CHECK = _module.is_param_in_hook_signature
LIGHTNINGS_DISPATCH = _call._call_callback_hooks
LIGHTNINGS_VERIFY = _loop_utilities._verify_dataloader_idx_requirement


def _signature_checks() -> list:
    """The signature check as each Lightning module that calls it during a fit sees it."""
    import importlib

    return [importlib.import_module(name).is_param_in_hook_signature for name in _fast_log._SIGNATURE_USERS]


def _verify_checks() -> list:
    """Lightning's dataloader_idx check as each loop that calls it sees it."""
    import importlib

    return [importlib.import_module(name)._verify_dataloader_idx_requirement for name in _fast_log._VERIFY_USERS]


def _metric(value) -> _ResultMetric:
    is_tensor = isinstance(value, torch.Tensor)
    m = _ResultMetric(_Metadata(fx="training_step", name="x", on_step=True, on_epoch=True), is_tensor)
    m.meta.sync = _Sync()
    m.update(value, 4)
    return m


@pytest.fixture
def fast():
    with _fast_log.installed() as on:
        assert on, "this Lightning is not one fast_log is tested on (fast_log.TESTED)"
        yield _ResultMetric.to


@pytest.fixture
def original_calls(monkeypatch, fast):
    """Count calls that reach Lightning's own ``to``."""
    original = fast._seqgen_original
    calls = []
    cell = fast.__closure__[fast.__code__.co_freevars.index("original")]
    monkeypatch.setattr(cell, "cell_contents", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    return calls


def test_importing_seqgen_leaves_lightning_untouched():
    import seqgen.callbacks  # noqa: F401
    import seqgen.models  # noqa: F401
    import seqgen.train  # noqa: F401

    assert _ResultMetric.__dict__["to"] is LIGHTNINGS_TO and not hasattr(_ResultMetric.to, "_seqgen_fast")
    assert _signature_checks() == [LIGHTNINGS_CHECK] * len(_fast_log._SIGNATURE_USERS)
    assert _call._call_callback_hooks is LIGHTNINGS_DISPATCH
    assert _verify_checks() == [LIGHTNINGS_VERIFY] * len(_fast_log._VERIFY_USERS)


def test_importing_seqgen_models_in_a_fresh_process_patches_nothing():
    import subprocess
    import sys

    code = ("from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric as R\n"
            "before = R.__dict__['to']\nimport seqgen.models, seqgen.train\n"
            "assert R.__dict__['to'] is before, 'patched on import'\nprint('untouched')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "untouched" in out.stdout, out.stderr


def test_installed_for_the_block_only_and_nested_blocks_share_it():
    with _fast_log.installed():
        inner = _ResultMetric.to
        assert inner._seqgen_fast and inner._seqgen_original is LIGHTNINGS_TO
        with _fast_log.installed():
            assert _ResultMetric.to is inner
        assert _ResultMetric.to is inner  # the outer block still holds it
        assert _module.is_param_in_hook_signature._seqgen_original is LIGHTNINGS_CHECK
        assert _signature_checks() == [_module.is_param_in_hook_signature] * len(_fast_log._SIGNATURE_USERS)
        verify = _verify_checks()
        assert all(v._seqgen_fast and v._seqgen_original is LIGHTNINGS_VERIFY for v in verify) and len(set(verify)) == 1
    assert _ResultMetric.__dict__["to"] is LIGHTNINGS_TO and _module.is_param_in_hook_signature is LIGHTNINGS_CHECK
    assert _signature_checks() == [LIGHTNINGS_CHECK] * len(_fast_log._SIGNATURE_USERS)
    assert _verify_checks() == [LIGHTNINGS_VERIFY] * len(_fast_log._VERIFY_USERS)


def test_a_run_restores_lightnings_own_method(tmp_path):
    seen = []

    import lightning as L

    class Spy(L.Callback):
        def on_train_batch_end(self, *args):
            seen.append(getattr(_ResultMetric.to, "_seqgen_fast", False))
            seen.extend(getattr(check, "_seqgen_fast", False) for check in _signature_checks())

    run(make_cfg(tmp_path, ["task=digits_mlp", "steps_per_execution=1", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                            "callbacks.progress_bar=null", "test=false", "logger=none"]), extra_callbacks=[Spy()])
    assert seen == [True] * 2 * (1 + len(_fast_log._SIGNATURE_USERS)) and _ResultMetric.__dict__["to"] is LIGHTNINGS_TO
    assert _signature_checks() == [LIGHTNINGS_CHECK] * len(_fast_log._SIGNATURE_USERS)


def test_off_on_an_untested_lightning_or_when_asked(monkeypatch):
    import lightning

    monkeypatch.setattr(lightning, "__version__", "9.0.0")
    with _fast_log.installed() as on:
        assert not on and _ResultMetric.__dict__["to"] is LIGHTNINGS_TO
    monkeypatch.setattr(lightning, "__version__", "2.6.6")
    monkeypatch.setenv("SEQGEN_FAST_LOG", "0")
    with _fast_log.installed() as on:
        assert not on and _ResultMetric.__dict__["to"] is LIGHTNINGS_TO


def test_nothing_to_move_returns_the_metric_without_lightnings_rebuild(original_calls):
    acc = MulticlassAccuracy(num_classes=3)
    acc.update(torch.tensor([[2.0, 0, 0], [0, 1.0, 0]]), torch.tensor([0, 2]))
    for m in (_metric(torch.tensor(1.5)), _metric(acc)):
        state = dict(vars(m))
        assert m.to(torch.device("cpu")) is m and m.to("cpu") is m
        assert vars(m) == state
    assert original_calls == []


def test_a_real_move_takes_lightnings_path(original_calls):
    m = _metric(torch.tensor(1.5))
    m.to(torch.device("meta"))  # a device the states are not on: moved by the original
    assert original_calls and m.value.device.type == "meta" and m.cumulated_batch_size.device.type == "meta"
    m._forward_cache = torch.zeros(2)  # states already there, one stray tensor elsewhere is enough
    n = len(original_calls)
    m.to("meta")
    assert len(original_calls) == n + 1 and m._forward_cache.device.type == "meta"
    m.to(device="meta")  # keyword arguments: always the original
    assert len(original_calls) == n + 2


def test_a_metric_inside_on_another_device_is_not_skipped():
    acc = MulticlassAccuracy(num_classes=3)
    m = _metric(acc)
    acc.tp = acc.tp.to("meta")  # a state left behind
    assert not _fast_log._all_on(vars(m), torch.device("cpu"))


def test_logged_metrics_identical_with_and_without_fast_path(tmp_path, monkeypatch):
    overrides = ["task=digits_vae", "trainer.max_epochs=2", "callbacks.progress_bar=null", "test=false"]
    fast = run(make_cfg(tmp_path / "fast", overrides))
    monkeypatch.setenv("SEQGEN_FAST_LOG", "0")  # Lightning's own path throughout
    slow = run(make_cfg(tmp_path / "slow", overrides))
    assert fast.keys() == slow.keys() and {"train/loss_epoch", "val/elbo", "train/beta"} <= fast.keys()
    assert fast == slow  # bit-identical: the fast path returns the very same tensors
    csv = [(tmp_path / name / "run" / "metrics.csv").read_text() for name in ("fast", "slow")]
    assert csv[0] == csv[1] and len(csv[0].splitlines()) > 3  # every logged value, step by step


def test_the_signature_check_is_lightnings_answer_once_per_function(fast, monkeypatch):
    """Within the block ``LightningModule.log``'s check of ``training_step``'s parameters gives
    Lightning's answer for methods, decorated hooks, ``*args`` and ``min_args``, asks Lightning once per
    function and question, and keeps no function alive."""
    import functools
    import gc
    import weakref

    cached = _module.is_param_in_hook_signature
    assert cached._seqgen_fast and cached._seqgen_original is LIGHTNINGS_CHECK

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return f(*args, **kwargs)
        return wrapper

    class M:
        def plain(self, batch, batch_idx): ...
        def with_iter(self, dataloader_iter): ...
        def star(self, *args): ...
        @decorate
        def decorated(self, dataloader_iter, batch_idx): ...

    m = M()
    questions = [("dataloader_iter", True, None), ("dataloader_iter", False, None), ("batch_idx", True, None),
                 ("x", True, 2), ("x", True, 3)]
    for hook in (m.plain, m.with_iter, m.star, m.decorated, M.plain, print):
        for param, explicit, min_args in questions:
            for _ in range(2):
                assert cached(hook, param, explicit, min_args) == LIGHTNINGS_CHECK(hook, param, explicit, min_args), (hook, param)
    asked = []
    original = cached.__closure__[cached.__code__.co_freevars.index("original")]
    monkeypatch.setattr(original, "cell_contents", lambda *a: asked.append(a) or LIGHTNINGS_CHECK(*a))

    class N:
        def training_step(self, batch, batch_idx): ...

    n = N()
    for _ in range(3):
        assert cached(n.training_step, "dataloader_iter", True) is False
    assert len(asked) == 1  # once for this function and question
    ref = weakref.ref(N.training_step)
    asked.clear()
    del n, N
    gc.collect()
    assert ref() is None  # the cache holds it weakly


def _hook_calls(tmp_path, name, profiler=None):
    """Every callback hook call of a short run, in order: (hook, callback, fx name the module saw, the
    arguments' types), from callbacks that define hooks on the class, on an instance, or none."""
    import lightning as L

    calls = []

    def record(label):
        def hook(trainer, pl_module, *args, **kwargs):
            calls.append((hook.name, label, pl_module._current_fx_name, tuple(type(a).__name__ for a in args),
                          tuple(sorted(kwargs))))
        return hook

    class OnClass(L.Callback):
        pass

    for hook in ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_before_optimizer_step",
                 "on_train_epoch_end", "on_validation_end", "setup", "teardown"):
        fn = record("class")
        fn.name = hook
        setattr(OnClass, hook, lambda self, *a, _fn=fn, **k: _fn(*a, **k))
    on_instance = L.Callback()
    fn = record("instance")
    fn.name = "on_after_backward"
    on_instance.on_after_backward = fn
    overrides = ["task=digits_mlp", "steps_per_execution=1", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                 "trainer.limit_val_batches=2", "callbacks.progress_bar=null", "test=false", "logger=none"]
    if profiler:
        overrides.append(f"+trainer.profiler={profiler}")
    run(make_cfg(tmp_path / name, overrides), extra_callbacks=[OnClass(), L.Callback(), on_instance])
    return calls


def test_callback_hooks_reach_the_same_callbacks_in_the_same_order_as_lightnings_dispatch(tmp_path, monkeypatch):
    """The fast dispatch (seqgen/fast_log.py) skips only callbacks whose hook is Callback's empty one:
    a run makes the same calls, in the same order, with the same arguments, as with Lightning's own
    (SEQGEN_FAST_LOG=0) and as with a profiler (Lightning's own dispatch, its profile blocks)."""
    fast = _hook_calls(tmp_path, "fast")
    profiled = _hook_calls(tmp_path, "profiled", profiler="simple")
    monkeypatch.setenv("SEQGEN_FAST_LOG", "0")
    lightnings = _hook_calls(tmp_path, "lightning")
    kinds = {hook for hook, *_ in fast}
    assert {"on_after_backward", "on_train_epoch_end", "on_before_optimizer_step", "setup", "teardown"} <= kinds
    assert len(fast) > 20 and fast == lightnings == profiled
    assert all(fx == hook for hook, _, fx, *_ in fast if hook.startswith("on_"))


def test_the_hook_name_is_a_plain_attribute_and_everything_else_goes_through_modules_setattr():
    """SeqgenModule stores Lightning's ``_current_fx_name`` (a str or None, set around every hook)
    directly; any other value or name still takes ``nn.Module.__setattr__`` (submodules and
    parameters registered, a tensor for a parameter's name refused)."""
    from seqgen.models.base import SeqgenModule

    m = SeqgenModule()
    m._current_fx_name = "training_step"
    assert m.__dict__["_current_fx_name"] == "training_step" and m._current_fx_name == "training_step"
    m._current_fx_name = None
    assert m._current_fx_name is None
    m.layer = torch.nn.Linear(2, 2)
    m.scale = torch.nn.Parameter(torch.ones(1))
    assert "layer" in m._modules and "scale" in m._parameters and "layer" not in m.__dict__
    with pytest.raises(TypeError, match="cannot assign"):
        m.scale = torch.zeros(1)


def test_the_dataloader_idx_check_is_lightnings_verdict_made_once_when_it_passes(fast, monkeypatch):
    """Within the block the loops' check of the step hooks' ``dataloader_idx`` passes and fails as
    Lightning's: a passing check is made once per hooks, verdict and stage; a failing one raises at
    every validation; a model whose hook changes is checked again."""
    from lightning.pytorch.trainer.states import RunningStage

    cached = _verify_checks()[0]
    asked = []
    original = cached.__closure__[cached.__code__.co_freevars.index("original")]
    monkeypatch.setattr(original, "cell_contents", lambda *a: asked.append(a[:3]) or LIGHTNINGS_VERIFY(*a))

    class One:
        def validation_step(self, batch, batch_idx): ...
        def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0): ...

    class Needs:
        def validation_step(self, batch, batch_idx, dataloader_idx): ...

    stage = RunningStage.VALIDATING
    for _ in range(3):
        cached(("validation_step",), False, stage, One())
        cached(("on_validation_batch_start",), False, stage, One())
    assert len(asked) == 2  # once each
    for expected in (True, False):  # several loaders but no dataloader_idx / one loader and a required one
        model = One() if expected else Needs()
        for _ in range(2):
            with pytest.raises(RuntimeError, match="dataloader_idx"):
                cached(("validation_step",), expected, stage, model)
            with pytest.raises(RuntimeError, match="dataloader_idx"):
                LIGHTNINGS_VERIFY(("validation_step",), expected, stage, model)
    assert len(asked) == 6
    changed = One()
    changed.validation_step = Needs().validation_step  # a hook replaced on the instance: its own function
    with pytest.raises(RuntimeError, match="dataloader_idx"):
        cached(("validation_step",), False, stage, changed)
