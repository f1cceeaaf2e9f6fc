"""Synthetic long-range tasks and SequenceModel: data is right, the LSTM learns the adding
problem, and bidirectionality helps where the future matters."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_cfg
from seqgen.data.synthetic import (
    SyntheticSequenceDataModule,
    adding_batch,
    baseline,
    copy_batch,
    tagging_batch,
)
from seqgen.errors import ConfigError
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false"]


def test_adding_batch_and_baseline():
    x, y = adding_batch(4000, 50, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 50, 2) and y.shape == (4000, 1)
    assert torch.equal(x[..., 1].sum(1), torch.full((4000,), 2.0))
    assert (x[:, :25, 1].sum(1) == 1).all() and (x[:, 25:, 1].sum(1) == 1).all()
    torch.testing.assert_close((x[..., 0] * x[..., 1]).sum(1, keepdim=True), y)
    # always answering 1.0 scores about 1/6
    assert abs(torch.mean((y - 1.0) ** 2).item() - 1 / 6) < 0.01
    assert baseline("adding", 50) == pytest.approx(0.1667, abs=1e-3)


def test_copy_batch_layout_and_baseline():
    x, y = copy_batch(3, 30, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 50)
    assert torch.equal(x[:, :10], y[:, -10:]) and (x[:, 10:39] == 0).all() and (x[:, 39] == 9).all()
    assert (y[:, :40] == 0).all() and ((x[:, :10] >= 1) & (x[:, :10] <= 8)).all()
    assert baseline("copy", 100) == pytest.approx(10 * math.log(8) / 120)


def test_tagging_labels():
    x, y = tagging_batch(2, 6, torch.Generator().manual_seed(0), vocab=8)
    for b in range(2):
        for t in range(6):
            assert y[b, t] == (x[b, t + 1] if t < 5 else 0)


def test_training_data_depends_on_epoch_and_rank_only():
    dm = SyntheticSequenceDataModule("adding", seq_len=10, batch_size=4, train_batches=2)
    a = [x for x, _ in dm.train_dataloader()]
    b = [x for x, _ in dm.train_dataloader()]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    dm.setup()
    assert dm.fixed["val"][0].shape == (1000, 10, 2) and not torch.equal(dm.fixed["val"][0], dm.fixed["test"][0])


def test_bad_synthetic_settings():
    with pytest.raises(ConfigError, match="available: adding, copy, tagging"):
        SyntheticSequenceDataModule("reverse")
    with pytest.raises(ConfigError, match="seq_len"):
        SyntheticSequenceDataModule("adding", seq_len=0)


@pytest.mark.slow
@pytest.mark.learning
def test_lstm_solves_adding_at_T50(tmp_path, learn_seed, lesson):
    metrics = run(make_cfg(tmp_path, ["task=adding_lstm", "trainer.max_epochs=10", f"seed={learn_seed}", *FAST]))
    lesson("test MSE (baseline 0.167)", metrics["test/loss"], "<", 0.05)


@pytest.mark.slow
@pytest.mark.learning
def test_bidirectional_beats_unidirectional_on_context_tagging(tmp_path, learn_seed, lesson):
    common = ["trainer.max_epochs=4", "data.train_batches=60", f"seed={learn_seed}", *FAST]
    uni = run(make_cfg(tmp_path / "uni", ["task=tagging_gru", *common]))
    bi = run(make_cfg(tmp_path / "bi", ["task=tagging_bigru", *common]))
    lesson("BiGRU test accuracy", bi["test/acc"], ">", 0.9)
    lesson("GRU test accuracy (cannot see x[t+1]; chance 1/8)", uni["test/acc"], "<", 0.25)
    lesson("BiGRU - GRU accuracy", bi["test/acc"] - uni["test/acc"], ">", 0.5)
