"""Run folders that concurrent runs never share.

``conf/hydra/default.yaml`` names a run's folder ``${seqgen.run_dir:<log_dir>/<task>,<time>}``:
the resolver creates it with an exclusive ``mkdir``, so two runs of one task started in the same
second get ``<time>`` and ``<time>_1`` (and so on), each created by exactly one of them. The ranks
of one distributed run agree on one folder: Lightning's own DDP launcher passes rank 0's folder to
the other ranks (``hydra.run.dir=...``), and under SLURM with several tasks (``srun``, one process
per rank) every rank of the job step uses ``slurm<job>[_<array task>]_step<step>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def run_dir(base: str, stamp: str, environ: dict[str, str] | None = None) -> str:
    """Create and return a folder under ``base`` that no other run has (see module doc)."""
    env = os.environ if environ is None else environ
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        job = env.get("SLURM_ARRAY_JOB_ID") or env["SLURM_JOB_ID"]
        task = f"_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_TASK_ID") else ""
        path = root / f"slurm{job}{task}_step{env.get('SLURM_STEP_ID', '0')}"
        path.mkdir(exist_ok=True)  # every rank of the step: the same folder
        return str(path)
    n = 0
    while True:
        path = root / (stamp if n == 0 else f"{stamp}_{n}")
        try:
            path.mkdir()
            return str(path)
        except FileExistsError:
            n += 1


def register() -> None:
    """Register the ``seqgen.run_dir`` resolver (cached: one folder per config, however often read)."""
    if not OmegaConf.has_resolver("seqgen.run_dir"):
        OmegaConf.register_new_resolver("seqgen.run_dir", run_dir, use_cache=True)


register()
