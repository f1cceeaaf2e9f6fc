"""The no-op fast path for Lightning's ``_ResultMetric.to`` (seqgen/models/_fast_log.py): taken
when nothing has to move, never when something does, and a run logs exactly the same metrics
with and without it."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric, _Sync
from torchmetrics.classification import MulticlassAccuracy

import seqgen.models  # noqa: F401  (installs the fast path)
from conftest import make_cfg
from seqgen.models import _fast_log
from seqgen.train import run


def _metric(value) -> _ResultMetric:
    is_tensor = isinstance(value, torch.Tensor)
    m = _ResultMetric(_Metadata(fx="training_step", name="x", on_step=True, on_epoch=True), is_tensor)
    m.meta.sync = _Sync()
    m.update(value, 4)
    return m


@pytest.fixture
def original_calls(monkeypatch):
    """Count calls that reach Lightning's own ``to``."""
    fast = _ResultMetric.to
    original = fast._seqgen_original
    calls = []
    cell = fast.__closure__[fast.__code__.co_freevars.index("original")]
    monkeypatch.setattr(cell, "cell_contents", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    return calls


def test_installed_once_and_idempotent():
    assert _ResultMetric.to._seqgen_fast
    before = _ResultMetric.to
    assert _fast_log.install() and _ResultMetric.to is before


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
    monkeypatch.setattr(_ResultMetric, "to", _ResultMetric.to._seqgen_original)
    slow = run(make_cfg(tmp_path / "slow", overrides))
    assert fast.keys() == slow.keys() and {"train/loss_epoch", "val/elbo", "train/beta"} <= fast.keys()
    assert fast == slow  # bit-identical: the fast path returns the very same tensors
    csv = [(tmp_path / name / "run" / "metrics.csv").read_text() for name in ("fast", "slow")]
    assert csv[0] == csv[1] and len(csv[0].splitlines()) > 3  # every logged value, step by step
