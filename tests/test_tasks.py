"""Every task under conf/task/ composes and runs one train+val+test step with trainer=debug."""

from __future__ import annotations

import math

import fixtures
import pytest
import yaml

from conftest import CONF, TASKS
from seqgen.train import run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Format-exact fixtures of PTB/WikiText (and Multi30k when SEQGEN_DATA_DIR lacks it)."""
    mp = pytest.MonkeyPatch()
    root = fixtures.write_all(tmp_path_factory.mktemp("data"), mp)
    yield root
    mp.undo()


@pytest.mark.parametrize("task", TASKS)
def test_task_runs_under_debug(task, cfg_factory, data_dir, monkeypatch):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    cfg = cfg_factory([f"task={task}", "trainer=debug", "callbacks.progress_bar=null", f"paths.data_dir={data_dir}"])
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
