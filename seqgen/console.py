"""A quiet console: one line per event, no adverts, no library noise.

``quiet_console()`` (called by :func:`seqgen.train.run`) does three things, each narrowly:

* Lightning's own console handler is dropped when the root logger already has handlers (Hydra's
  job logging, as in ``scripts/train.py``), so each Lightning INFO line is printed once, not twice.
  Used from plain Python (no root handlers), Lightning keeps its own.
* Lightning's vendor tips, the lines about accelerators this machine does not have (TPU, HPU),
  the note that seqgen's own model summary replaces Lightning's, and the first of the two lines
  Lightning writes per checkpoint restored are filtered where they are logged.
* Known warnings that say nothing about the user's run are ignored by their exact message: a
  deprecation inside Lightning's own code, the run folder that seqgen created itself being "not
  empty" for the CSV logger, and the worker-count and ``IterableDataset.__len__`` hints for data
  that is already in memory and batched in the main process.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category): each one was seen on a default run and is not about the user's run
KNOWN_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", Warning),  # torch's pytree API, inside Lightning
    (r"Experiment logs directory .* exists and is not empty", Warning),  # seqgen made the run folder itself
    (r"Your `IterableDataset` has `__len__` defined", Warning),  # our iterable datasets run in the main process
    (r"The '\w+_dataloader' does not have many workers", Warning),  # in-memory tensors: workers only cost
    # mixed precision keeps fp32 weights, so the summary's 32-bit size is the true one
    (r"Precision bf16-mixed is not supported by the model summary", Warning),
)
_DROPPED_LINES = ("💡 Tip:", "TPU available:", "HPU available:",
                  "Trainer already configured with model summary callbacks",  # seqgen's own summary, by design
                  "Restoring states from the checkpoint path at")  # "Restored all states"/"Loaded model weights" follows


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_DROPPED_LINES)


_FILTER = _DropLines()


def quiet_console() -> None:
    for pattern, category in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if logging.getLogger().hasHandlers():  # Hydra (or the user) configured logging: print through it, once
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for h in list(logger.handlers):
                if type(h) is logging.StreamHandler:
                    logger.removeHandler(h)
            logger.propagate = True
