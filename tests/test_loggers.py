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


def test_csv_rows_are_written_on_a_timer_and_all_of_them_at_the_end(tmp_path, monkeypatch):
    """seqgen's CSV logger: Lightning's connector asks for a save after every logged row; the rows
    wait in memory until ``flush_every_s`` seconds have passed since the last write, and every row
    is in the file, in order, once the logger is finalised (as at the end of fit or test)."""
    import csv

    import seqgen.loggers as loggers

    clock = [100.0]
    monkeypatch.setattr(loggers.time, "monotonic", lambda: clock[0])
    log = loggers.CSVLogger(tmp_path, name="", version="", flush_every_s=5)
    path = tmp_path / "metrics.csv"
    read = lambda: [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(open(path))] if path.exists() else []  # noqa: E731
    log.log_metrics({"loss": 1.0}, step=0)
    log.save()
    assert read() == [(0, 1.0)]  # the first save writes
    for step in (1, 2, 3):
        clock[0] += 1.5
        log.log_metrics({"loss": float(step)}, step=step)
        log.save()
    assert read() == [(0, 1.0)]  # 4.5 s since the write: the rows wait
    clock[0] += 1.0
    log.log_metrics({"loss": 4.0}, step=4)
    log.save()
    assert read() == [(0, 1.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]  # 5.5 s: all of them, in order
    log.log_metrics({"loss": 5.0}, step=5)
    log.save()
    assert len(read()) == 5
    log.finalize("success")
    assert read()[-1] == (5, 5.0) and len(read()) == 6
    with pytest.raises(ValueError, match="flush_every_s"):
        loggers.CSVLogger(tmp_path, flush_every_s=-1)
