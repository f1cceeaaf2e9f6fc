"""Every task under conf/task/ composes and runs one train+val+test step with trainer=debug."""

from __future__ import annotations

import math

import fixtures
import lightning as L
import pytest
import yaml
from omegaconf import open_dict

from conftest import CONF, TASKS, make_cfg
from seqgen.train import run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, sentencepiece_cache):
    """Format-exact fixtures of PTB/WikiText (and Multi30k when SEQGEN_DATA_DIR lacks it)."""
    mp = pytest.MonkeyPatch()
    root = fixtures.write_all(tmp_path_factory.mktemp("data"), mp)
    (root / "sentencepiece").symlink_to(sentencepiece_cache, target_is_directory=True)
    yield root
    mp.undo()


# tasks that need another run's checkpoint (debug runs save none): source task to train briefly first
NEEDS_SOURCE = {"digits_transfer_0to4_5to9": "digits_lenet_0to4", "digits_dbn": "digits_dbn_pretrain",
                "mnist_dbn": "mnist_dbn_pretrain", "langid_transfer_from_lm": "lm_multi30k_langid"}


class _DataValuesArrived(L.Callback):
    """The class of bug that made word LMs report 'bpc': a value the data module knows (its
    ``dims``, or an attribute of the same name as a model hyperparameter, such as ``level``) that
    the model holds a different value of, because it never arrived and a default stood in."""

    checked: list[str] | None = None

    def on_fit_start(self, trainer, pl_module):
        dm, hp = trainer.datamodule, pl_module.hparams
        plain = (int, float, str, bool, list, tuple)
        known = {**{k: v for k, v in vars(dm).items() if not k.startswith("_")}, **dm.dims}
        self.checked = sorted(k for k in hp if k in known and isinstance(known[k], plain))
        for k in self.checked:
            theirs = list(known[k]) if isinstance(known[k], tuple) else known[k]
            ours = list(hp[k]) if isinstance(hp[k], tuple) else hp[k]
            assert ours == theirs, f"model.{k}={ours!r} but the data module has {theirs!r}"


# over 5 s each on the 2-core CI machine (big nets, or a sentencepiece model / source run to train first)
SLOW_TASKS = {"cifar10_googlenet", "cifar10_densenet121", "cifar10_resnet18", "langid_multi30k_bigru",
              "digits_transfer_0to4_5to9", "multi30k_de_en_attn", "lm_multi30k_langid", "char_lm", "langid_transfer_from_lm",
              "digits_lenet_0to4",
              "voc_detect_yolo", "coco_detect_fcos", "digits_detect_yolo", "digits_detect_fcos"}


@pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.slow) if t in SLOW_TASKS else t for t in TASKS])
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
    if cfg.data.get("eval_batch_size"):  # one evaluation batch checks the wiring: a translator's untrained beam
        with open_dict(cfg):               # search of 256 sentences ran to its length limit (8 s)
            cfg.data.eval_batch_size = min(cfg.data.eval_batch_size, 16)
    if str(cfg.data._target_).endswith(("ImageDataModule", "DetectionDataModule")):  # one step of a big net needs no big batch
        with open_dict(cfg):
            cfg.data.batch_size = min(cfg.data.batch_size, 16)
            if "canvas" in cfg.data:  # generated detection canvases: a debug step needs a few
                cfg.data.canvas.update(train=32, val=16, test=16)
            if "num_workers" in cfg.data:  # loader workers talk over sockets, which no_network forbids
                cfg.data.num_workers = 0
            if cfg.data.get("dataset") in ("voc", "coco"):  # one step at 128 px checks the wiring
                cfg.data.image_size = min(cfg.data.image_size, 128)
    arrived = _DataValuesArrived()
    metrics = run(cfg, extra_callbacks=[arrived])
    assert arrived.checked is not None, "the data/model check did not run"
    losses = [v for k, v in metrics.items() if k.startswith("test/")]
    assert losses, f"{task}: no test metric logged: {sorted(metrics)}"
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("task", TASKS)
def test_task_file_is_global_package(task):
    text = (CONF / "task" / f"{task}.yaml").read_text()
    assert text.startswith("# @package _global_"), f"{task}.yaml must start with '# @package _global_'"
    assert "task_name" not in yaml.safe_load(text), "task_name comes from the chosen task (conf/train.yaml), not restated"


def test_slow_tasks_exist():
    assert SLOW_TASKS <= set(TASKS)
