"""Interruption and exact resume, through the command line: a run sent SIGTERM or SIGINT in the
middle of an epoch stops after the batch, saves ``last.ckpt`` and exits with 128 + signal; resumed
with ``ckpt_path=<that run>``, it ends with the same weights and test metrics as a run never
interrupted (``trainer.deterministic=true``, CPU); the best-checkpoint bookkeeping carries over into
the new run folder, so the checkpoint picked for the test is the same too, and the interrupted
run's folder is left as it was. One family per case: language model (truncated
BPTT state carried across the cut), classifier, GAN (two optimisers, manual optimisation), DBN
pretraining (layer-wise stages), translator (bucketed batches); each at eight optimiser steps per
training step (``steps_per_execution``: the LM's and translator's recipes' K, the digits recipes' 32
set to 8 here), the DBN pretraining at one."""

from __future__ import annotations

import json
import random

import pytest
import torch

from conftest import ROOT, run_cli

TRAIN = str(ROOT / "scripts" / "train.py")
COMMON = ["trainer.deterministic=true", "callbacks.progress_bar=null", "trainer.enable_model_summary=false", "logger=csv",
          "trainer.num_sanity_val_steps=0"]
FAMILIES = {
    # task overrides, signal
    # eight optimiser steps per training step (K=8 in every family but the DBN's):
    # 12 batches an epoch are groups of 8 and 4, the cut falls at a group's end, the resumed loader
    # starts after the batches already trained on and stops at the limit
    "lm": (["task=char_lm", "steps_per_execution=8", "model.net.hidden_size=48", "model.net.num_layers=1",
            "model.net.embedding_dim=16", "data.batch_size=8", "data.bptt=40", "trainer.max_epochs=2", "trainer.limit_train_batches=12",
            "trainer.limit_val_batches=3", "trainer.limit_test_batches=3", "callbacks.text_samples=null"], "SIGTERM"),
    "classifier": (["task=digits_mlp", "steps_per_execution=8", "trainer.max_epochs=3", "model.net.dropout=0.2"], "SIGINT"),
    "gan": (["task=digits_gan", "steps_per_execution=8", "trainer.max_epochs=2", "trainer.limit_train_batches=10", "model.eval_samples=200"], "SIGTERM"),
    "dbn": (["task=digits_dbn_pretrain", "trainer.max_epochs=4", "model.epochs_per_layer=2",
             "trainer.limit_train_batches=8"], "SIGTERM"),
    "translator": (["task=dates_attn", "data.num_train=1500", "data.num_eval=100", "data.batch_size=64",
                    "model.net.hidden_size=32", "trainer.max_epochs=2", "callbacks.early_stopping=null"], "SIGINT"),
}


def _train(tmp_path, name, overrides, extra=()):
    out = tmp_path / name
    proc = run_cli([TRAIN, *overrides, *COMMON, f"hydra.run.dir={out}", *extra], tmp_path, timeout=400,
                      env={"PYTHONPATH": str(ROOT / "tests")})
    return proc, out


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_killed_mid_epoch_resumes_to_the_same_result(family, tmp_path):
    overrides, sig = FAMILIES[family]
    full, full_dir = _train(tmp_path, "full", overrides)
    assert full.returncode == 0, full.stderr[-3000:]
    end = torch.load(full_dir / "checkpoints" / "last.ckpt", weights_only=True)
    per_epoch = end["global_step"] // (end["epoch"] + 1)  # optimiser steps per epoch (2 per batch for a GAN)
    kill_at = random.Random(family).randrange(per_epoch + 2, 2 * per_epoch - 2)  # a random step inside epoch 1

    cut, cut_dir = _train(tmp_path, "cut", overrides, ["+callbacks.kill._target_=signal_at_step.SignalAtStep",
                                                       f"+callbacks.kill.step={kill_at}", f"+callbacks.kill.signal_name={sig}"])
    code = {"SIGTERM": 143, "SIGINT": 130}[sig]
    assert cut.returncode == code, cut.stderr[-3000:]
    assert "ckpt_path=last" in cut.stderr and not (cut_dir / "metrics.json").exists()
    saved = torch.load(cut_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] >= kill_at and saved["epoch"] == 1  # the batch in flight finished, then it stopped

    before = sorted(p.name for p in (cut_dir / "checkpoints").iterdir())
    resumed, res_dir = _train(tmp_path, "resumed", overrides, [f"ckpt_path={cut_dir}"])
    assert sorted(p.name for p in (cut_dir / "checkpoints").iterdir()) == before  # the earlier run is untouched
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((full_dir / "metrics.json").read_text())
    b = json.loads((res_dir / "metrics.json").read_text())
    tests = {k for k in a if k.startswith("test/")}
    assert tests and {k: a[k] for k in tests} == {k: b[k] for k in tests}
    wa = torch.load(full_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    wb = torch.load(res_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), family


@pytest.fixture
def default_sigint():
    """Python's own Ctrl+C handler for the test, whatever earlier tests in this worker left, and the
    worker's handler back afterwards: the test sees the state a fresh interpreter has."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield signal.default_int_handler
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_given_back_after_a_run_even_one_that_failed(tmp_path, default_sigint):
    """In-process (notebooks, sweeps): after run() returns or raises, Ctrl+C interrupts again."""
    import os
    import signal
    import time

    from conftest import make_cfg
    from seqgen.errors import NonFiniteLossError
    from seqgen.train import run

    fast = ["task=digits_mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null", "logger=none"]
    run(make_cfg(tmp_path / "ok", [*fast, "trainer.limit_train_batches=2"]))
    with pytest.raises(NonFiniteLossError):
        run(make_cfg(tmp_path / "nan", [*fast, "model.optimizer.lr=1e12", "model.net.activation=relu"]))
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2)


def test_first_ctrl_c_stops_after_the_batch_and_the_second_aborts_at_once(tmp_path, default_sigint, capsys):
    import os
    import signal
    import time

    from seqgen.callbacks import GracefulInterrupt

    class Connector:
        received_sigterm = False

    class Trainer:  # the two attributes the callback reads of Lightning's Trainer
        _signal_connector = Connector()

        @property
        def received_sigterm(self):
            return self._signal_connector.received_sigterm

    trainer = Trainer()
    connector = trainer._signal_connector
    cb = GracefulInterrupt(str(tmp_path))
    cb.setup(trainer, None, "fit")
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first: a flag for Lightning's loop, no exception
        time.sleep(0.2)
        assert connector.received_sigterm and cb.signum == signal.SIGINT
        assert "Ctrl+C again to abort at once" in capsys.readouterr().out
        with pytest.raises(KeyboardInterrupt):  # the second: Python's own handler, at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)
    finally:
        cb.teardown(trainer, None, "fit")
    assert signal.getsignal(signal.SIGINT) is default_sigint
