"""Experiment tracking: runs logged to MLflow (a real SQLite store, queried back through the
MLflow client) and to Weights & Biases in offline mode; hyperparameters, final metrics, images."""

from __future__ import annotations

import pytest

from conftest import make_cfg
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false"]


@pytest.mark.slow
def test_mlflow_sqlite_store_holds_params_metrics_and_images(tmp_path):
    from mlflow.tracking import MlflowClient

    # 8 steps per execution: the recipe's 64 make its one epoch a single group, logged once
    metrics = run(make_cfg(tmp_path, ["task=digits_vae", "trainer.max_epochs=1", "logger=mlflow", "steps_per_execution=8", *FAST]))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("digits_vae")
    (logged,) = client.search_runs([exp.experiment_id])
    params = logged.data.params
    assert params["task_name"] == "digits_vae" and params["data/dataset"] == "digits"
    assert params["net/latent_dim"] == "8" and params["trainer/max_epochs"] == "1"
    assert logged.data.metrics["test/nll_iwae"] == pytest.approx(metrics["test/nll_iwae"], rel=1e-6)
    assert logged.data.metrics["test/elbo"] == pytest.approx(metrics["test/elbo"], rel=1e-6)
    history = client.get_metric_history(logged.info.run_id, "train/loss_step")
    assert len(history) >= 2  # logged during training, not only at the end
    pngs = [a.path for a in client.list_artifacts(logged.info.run_id, "samples")]
    assert "samples/samples_test.png" in pngs


@pytest.mark.slow
def test_wandb_offline_run_records_metrics_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run(make_cfg(tmp_path, ["task=digits_mlp", "trainer.max_epochs=1", "logger=wandb", *FAST]))
    import wandb

    # run.finish() returns once the exit record is handed over; the wandb-core service closes (and so
    # flushes) the .wandb file a moment later. teardown() waits for the service, as process exit does.
    wandb.teardown()
    (record,) = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    data = record.read_bytes()  # the protobuf records `wandb sync` would upload
    for key in (b"test/acc", b"val/acc", b"task_name", b"digits_mlp", b"optimizer"):
        assert key in data, key
