"""Shared fixtures: compose task configs in-process (Hydra compose API) and run them."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hypothesis import settings
from omegaconf import DictConfig, open_dict

import seqgen.runs  # noqa: F401  (the run-folder resolver of conf/hydra/default.yaml)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))

# hypothesis: in CI the same examples every run (a red run is reproducible), no example database
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# two pytest-xdist workers share two cores: one thread each keeps them from fighting
torch.set_num_threads(int(os.environ.get("SEQGEN_TEST_THREADS", "1")))


# -- learning lessons and their measured margins -----------------------------------------------------
# A learning test seeds its run with ``learn_seed`` and states each assertion through ``lesson``.
# tests/margins.py reruns every ``learning`` test over several seeds and thread counts with
# SEQGEN_MARGIN_SEED / SEQGEN_TEST_THREADS / SEQGEN_MARGINS_OUT set, and prints each threshold
# beside the worst value seen (the table the thresholds were chosen from).
LEARN_SEED = int(os.environ.get("SEQGEN_MARGIN_SEED", "1234"))
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@pytest.fixture
def learn_seed() -> int:
    return LEARN_SEED


def check_lesson(test_id: str, name: str, value: float, op: str, threshold: float) -> None:
    """Assert ``value op threshold``; when SEQGEN_MARGINS_OUT is set, record it (one JSON line) and
    do not raise, so one sweep sees every value, including the ones that would fail."""
    out = os.environ.get("SEQGEN_MARGINS_OUT")
    if out:
        row = {"test": test_id, "lesson": name, "value": float(value), "op": op, "threshold": float(threshold),
               "seed": LEARN_SEED, "threads": torch.get_num_threads()}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        return
    assert _OPS[op](value, threshold), f"{name} = {value:.4f}, expected {op} {threshold}"


@pytest.fixture
def lesson(request):
    test_id = request.node.nodeid.split("::", 1)[-1]
    return lambda name, value, op, threshold: check_lesson(test_id, name, value, op, threshold)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test loudly (an AssertionError, not a
    DataNotFoundError the code under test could take for an offline machine)."""
    import socket
    import urllib.request

    def touched(*a, **k):
        raise AssertionError(f"the network was touched: {a[:2]}")

    monkeypatch.setattr(urllib.request, "urlopen", touched)
    monkeypatch.setattr(socket.socket, "connect", touched)
    monkeypatch.setattr(socket, "create_connection", touched)
    monkeypatch.setattr(socket, "getaddrinfo", touched)


def make_cfg(tmp_path: Path, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` as scripts/train.py would, with the run
    folder under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=list(overrides or []), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "outputs")
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda overrides=None, sub="": make_cfg(tmp_path / sub if sub else tmp_path, overrides)


@pytest.fixture(scope="session")
def sentencepiece_cache(tmp_path_factory) -> Path:
    """One sentencepiece cache folder for the fixture data folders of a whole run, shared by the xdist
    workers: a cached model is keyed by its settings and its text and written under a lock, so the
    Multi30k language-ID model (unigram, 4,000 pieces, 87,000 lines: 9-11 s) is trained once a run, not
    once per test that builds it. Link it in as ``<data folder>/sentencepiece``."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "sentencepiece_cache"
    path.mkdir(exist_ok=True)
    return path


def shared_data_dir() -> Path | None:
    d = os.environ.get("SEQGEN_DATA_DIR")
    return Path(d) if d and Path(d).is_dir() else None


def script_env(**extra: str) -> dict[str, str]:
    """The environment of a script a test starts: this one, unbuffered, with the test worker's
    intra-op thread count (``SEQGEN_TEST_THREADS``, default 1) as ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` unless the environment or the test sets them. Left to torch's default, a
    script takes every core while the other test worker computes too: OpenMP threads then wait on
    descheduled ones, and a 24 s kill/resume test took 83 s inside the suite."""
    threads = str(torch.get_num_threads())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    env.pop("SEQGEN_TEST_THREADS", None)
    return env


def run_script(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None,
               input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=script_env(**(env or {})), input=input)


def run_cli(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """As :func:`run_script`, in a process forked with torch, Lightning and Hydra already imported
    (``tests/cli_runner.py``): for tests that run the command line several times and do not test
    what a fresh interpreter does at import time."""
    from cli_runner import run_forked

    return run_forked(args, cwd, script_env(**(env or {})), timeout)


class PoisonAt:
    """Test callback: make the LM's decoder bias NaN from the forward pass of training step ``step``
    (a forward pre-hook, so a step inside a group of steps per execution is reached too) to the end of
    that Lightning training step."""

    def __new__(cls, *args, **kwargs):
        import lightning as L

        class _Poison(L.Callback):
            def __init__(self, step: int):
                self.step, self.saved = step, None

            def on_fit_start(self, trainer, pl_module):
                def poison(net, args):
                    if net.training and trainer.global_step == self.step and self.saved is None:
                        bias = net.decoder.bias
                        self.saved = bias.detach().clone()
                        with torch.no_grad():
                            bias.fill_(float("nan"))

                pl_module.net.register_forward_pre_hook(poison)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if self.saved is not None and not torch.isfinite(pl_module.net.decoder.bias).all():
                    with torch.no_grad():
                        pl_module.net.decoder.bias.copy_(self.saved)

        return _Poison(*args, **kwargs)
