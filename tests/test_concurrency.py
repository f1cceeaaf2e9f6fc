"""Concurrent runs lose nothing: each run its own complete folder, shared caches and downloads
made once under a lock, an MLflow store several first runs can create at once (and the same
through a local tracking server). Real processes started together: threads would share one
interpreter's state and prove nothing about files. They are forked from a server process that
imported torch, Lightning and Hydra once (``tests/cli_runner.py``), so they skip those imports."""

from __future__ import annotations

import hashlib
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import Forked

from conftest import ROOT, script_env

TRAIN = str(ROOT / "scripts" / "train.py")
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null",
         "trainer.enable_model_summary=false"]


def _env(**extra: str) -> dict[str, str]:
    return script_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)  # several processes share 2 cores


def _together(commands: list[list[str]], cwd: Path, timeout: int = 300, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Start every command (``[sys.executable, ...]``) at once and wait for all: separate processes,
    forked with torch, Lightning and Hydra already imported (``tests/cli_runner.py``)."""
    procs = [Forked(c[1:], cwd, env or _env()) for c in commands]
    return [p.result(timeout) for p in procs]


@pytest.mark.slow
def test_four_first_runs_in_the_same_second_get_four_complete_folders_and_one_mlflow_store(tmp_path):
    """Four runs of one task started together, on a fresh MLflow SQLite store, and forced into one
    folder name (a fixed stamp instead of the time: the collision is certain)."""
    from mlflow.tracking import MlflowClient

    base = tmp_path / "outputs" / "digits_mlp"
    commands = [[sys.executable, TRAIN, "task=digits_mlp", f"seed={i}", "logger=[csv,mlflow]",
                 f"paths.log_dir={tmp_path / 'outputs'}", *QUICK, f"hydra.run.dir=${{seqgen.run_dir:{base},same_second}}"]
                for i in range(4)]
    results = _together(commands, tmp_path)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["same_second", "same_second_1", "same_second_2", "same_second_3"]
    seeds = []
    for folder in folders:
        assert (folder / "checkpoints" / "last.ckpt").is_file() and (folder / "metrics.json").is_file()
        assert (folder / "metrics.csv").is_file() and (folder / ".hydra" / "config.yaml").is_file()
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        (seed,) = [o for o in overrides if o.startswith("seed=")]
        assert yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())["seed"] == int(seed[5:])
        command = next(c for c in commands if seed in c)
        assert overrides == command[2:-1]  # its own command (Hydra keeps hydra.* overrides in hydra.yaml)
        seeds.append(seed)
    assert sorted(seeds) == [f"seed={i}" for i in range(4)]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    assert len(runs) == 4 and {r.data.params["seed"] for r in runs} == {"0", "1", "2", "3"}
    assert all("test/acc" in r.data.metrics and "val/loss" in r.data.metrics for r in runs)


def test_run_dir_is_exclusive_and_slurm_ranks_share_one(tmp_path):
    from seqgen.runs import run_dir

    got = [run_dir(str(tmp_path / "t"), "stamp", environ={}) for _ in range(3)]
    assert [Path(p).name for p in got] == ["stamp", "stamp_1", "stamp_2"]
    slurm = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}
    ranks = {run_dir(str(tmp_path / "t"), f"t{r}", environ=slurm) for r in range(4)}  # clocks may differ
    assert ranks == {str(tmp_path / "t" / "slurm77_step0")}
    one_task = {"SLURM_JOB_ID": "78", "SLURM_NTASKS": "1"}  # array jobs of one task each: by time, exclusively
    assert Path(run_dir(str(tmp_path / "t"), "stamp", environ=one_task)).name == "stamp_3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_three_runs_at_once_through_a_local_tracking_server(tmp_path):
    from mlflow.tracking import MlflowClient

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              # without MLflow's job runner (GenAI scoring jobs; seqgen sends none), whose start
                              # kept the server busy for half a minute after it took connections (runs 36 -> 21 s)
                              env=_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    try:
        deadline = time.time() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        commands = [[sys.executable, TRAIN, "task=digits_mlp", f"seed={i}", "logger=mlflow_server",
                     f"paths.log_dir={tmp_path / 'outputs'}", *QUICK] for i in range(3)]
        for r in _together(commands, tmp_path, env=_env(MLFLOW_TRACKING_URI=uri)):
            assert r.returncode == 0, r.stderr[-3000:]
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
        assert len(runs) == 3 and {r.data.params["seed"] for r in runs} == {"0", "1", "2"}
        assert all("test/acc" in r.data.metrics for r in runs)
    finally:
        server.terminate()
        server.wait(timeout=30)


SP_SNIPPET = """
import sys, hashlib
from seqgen.data.tokenizers import SentencePieceTokenizer
lines = [f"line {i} of the shared corpus, word{i % 37} and word{i % 11}" for i in range(3000)]
tok, reused = SentencePieceTokenizer.train_cached(lines, sys.argv[1], vocab_size=200, model_type="unigram")
print("reused" if reused else "trained", hashlib.md5(tok.model_proto).hexdigest())
"""


@pytest.mark.slow
def test_concurrent_runs_train_one_sentencepiece_model_and_share_it(tmp_path):
    results = _together([[sys.executable, "-c", SP_SNIPPET, str(tmp_path)] for _ in range(3)], ROOT)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    words = [r.stdout.split() for r in results]
    assert sorted(w[0] for w in words) == ["reused", "reused", "trained"]  # one trained, the others waited
    assert len({w[1] for w in words}) == 1
    files = sorted(p.name for p in (tmp_path / "sentencepiece").iterdir())
    assert len([f for f in files if f.endswith(".model")]) == 1 and not [f for f in files if ".tmp" in f]


PAYLOAD = bytes(range(256)) * 8192  # 2 MiB


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    gets: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).gets.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        for i in range(0, len(PAYLOAD), 1 << 18):  # slowly: the other processes arrive while it streams
            self.wfile.write(PAYLOAD[i:i + (1 << 18)])
            time.sleep(0.1)

    def log_message(self, *args):
        pass


FETCH_SNIPPET = """
import sys, urllib.request
from seqgen.data.download import Resource, fetch
real = urllib.request.urlopen
def local(request, timeout=None):  # the published https URL, served from 127.0.0.1
    url = request.full_url.replace("https://example.org", "http://127.0.0.1:" + sys.argv[2])
    return real(urllib.request.Request(url, headers=dict(request.header_items())), timeout=timeout)
urllib.request.urlopen = local
path = fetch(Resource("shared/file.bin", ("https://example.org/file.bin",), md5=sys.argv[3]), sys.argv[1])
print(path)
"""


@pytest.mark.slow
def test_concurrent_fetches_download_once_and_all_get_the_verified_file(tmp_path):
    _SlowHandler.gets = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    try:
        results = _together([[sys.executable, "-c", FETCH_SNIPPET, str(tmp_path), str(server.server_address[1]), md5]
                             for _ in range(3)], ROOT)
    finally:
        server.shutdown()
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    target = tmp_path / "shared" / "file.bin"
    assert {r.stdout.strip() for r in results} == {str(target)}
    assert hashlib.md5(target.read_bytes()).hexdigest() == md5
    assert _SlowHandler.gets == ["/file.bin"]  # one transfer; the others waited for it and reused the file
    assert not list((tmp_path / "shared").glob("*.part"))


HOLD_SNIPPET = """
import sys, time
from seqgen.locks import locked
with locked(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_leaves_no_lock_that_blocks(tmp_path):
    from seqgen.locks import locked

    target = tmp_path / "cache.model"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SNIPPET, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env=_env())
    assert holder.stdout.readline().strip() == "holding"
    from filelock import Timeout

    with pytest.raises(Timeout), locked(target, timeout=0.5):
        pass  # held by the other process
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / ".locks" / "cache.model.lock").exists()  # the file stays behind ...
    start = time.time()
    with locked(target, timeout=5) as got:
        assert got and time.time() - start < 5  # ... but the kernel dropped the dead holder's lock


@pytest.mark.slow
def test_two_sweeps_in_the_same_second_get_two_sweep_folders(tmp_path):
    base = tmp_path / "outputs" / "digits_mlp"
    commands = [[sys.executable, TRAIN, "-m", "task=digits_mlp", f"seed={i}", "model.optimizer.lr=0.01,0.001",
                 "logger=none", *QUICK, f"hydra.sweep.dir=${{seqgen.run_dir:{base},multirun_same}}"] for i in range(2)]
    for r in _together(commands, tmp_path):
        assert r.returncode == 0, r.stderr[-2000:]
    sweeps = sorted(base.iterdir())
    assert [s.name for s in sweeps] == ["multirun_same", "multirun_same_1"]
    seeds = set()
    for sweep in sweeps:  # each sweep's jobs share its one folder
        jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
        assert jobs == ["0", "1"]
        found = {yaml.safe_load((sweep / j / ".hydra" / "config.yaml").read_text())["seed"] for j in jobs}
        assert len(found) == 1 and all((sweep / j / "metrics.json").is_file() for j in jobs)
        seeds |= found
    assert seeds == {0, 1}
