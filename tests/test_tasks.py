"""Every task under conf/task/ composes and runs one train+val+test step with trainer=debug."""

from __future__ import annotations

import math

import fixtures
import pytest
import yaml

from conftest import CONF, TASKS, make_cfg
from seqgen.train import run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Format-exact fixtures of PTB/WikiText (and Multi30k when SEQGEN_DATA_DIR lacks it)."""
    mp = pytest.MonkeyPatch()
    root = fixtures.write_all(tmp_path_factory.mktemp("data"), mp)
    yield root
    mp.undo()


# tasks that need another run's checkpoint (debug runs save none): source task to train briefly first
NEEDS_SOURCE = {"digits_transfer_0to4_5to9": "digits_lenet_0to4", "digits_dbn": "digits_dbn_pretrain",
                "mnist_dbn": "mnist_dbn_pretrain", "langid_transfer_from_lm": "lm_multi30k_langid"}


@pytest.mark.parametrize("task", TASKS)
def test_task_runs_under_debug(task, tmp_path, data_dir, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    common = ["callbacks.progress_bar=null", f"paths.data_dir={data_dir}"]
    extra = []
    if task in NEEDS_SOURCE:
        run(make_cfg(tmp_path / "source", [f"task={NEEDS_SOURCE[task]}", "trainer.max_epochs=1",
                                           "trainer.limit_train_batches=2", "logger=none", *common]))
        extra.append(f"model.init_from={tmp_path / 'source' / 'run'}")
    cfg = make_cfg(tmp_path, [f"task={task}", "trainer=debug", *common, *extra])
    assert cfg.task_name == task, "task_name must equal the task file's name (it names the run folder)"
    metrics = run(cfg)
    losses = [v for k, v in metrics.items() if k.startswith("test/")]
    assert losses, f"{task}: no test metric logged: {sorted(metrics)}"
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("task", TASKS)
def test_task_file_is_global_package(task):
    text = (CONF / "task" / f"{task}.yaml").read_text()
    assert text.startswith("# @package _global_"), f"{task}.yaml must start with '# @package _global_'"
    assert yaml.safe_load(text)["task_name"] == task
