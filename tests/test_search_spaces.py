"""Sweep configs: every Optuna search space names keys its task really has."""

from __future__ import annotations

import pytest

from conftest import make_cfg


@pytest.mark.parametrize("search,task", [("char_lm_optuna", "char_lm"), ("digits_mlp_optuna", "digits_mlp"),
                                         ("digits_lenet_optuna", "digits_lenet"), ("dates_attn_optuna", "dates_attn")])
def test_every_search_space_names_keys_its_task_has(search, task, tmp_path):
    """A sweep whose parameter is misspelled would fail only at its first trial: check every
    searched key exists in the composed task config and the optimised metric is one it logs."""
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, [f"task={task}", f"hparams_search={search}"])
    params = cfg.hydra.sweeper.params
    assert len(params) >= 3
    for key in params:
        assert OmegaConf.select(cfg, key, default="__missing__") != "__missing__", f"{search}: {key} not in {task}"
    assert cfg.optimized_metric.startswith("val/")
