#!/usr/bin/env python
"""Train (and test) a seqgen task: ``python scripts/train.py task=<recipe> [key=value ...]``.

With no arguments it trains the default task, a character-level LSTM language model of
CPython's documentation. ``--help`` shows the config; ``--cfg job`` prints it resolved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import seqgen.runs  # noqa: E402,F401  (the run-folder resolver of conf/hydra/default.yaml)
from seqgen.errors import SeqgenError  # noqa: E402

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from seqgen.errors import TrainingInterrupted
    from seqgen.train import optimized_value, reproducible_blas, run

    reproducible_blas(cfg)  # before the first matmul of this process
    try:
        metrics = run(cfg)
        return optimized_value(cfg, metrics)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)  # the shell's convention for "killed by signal N"
    except SeqgenError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
