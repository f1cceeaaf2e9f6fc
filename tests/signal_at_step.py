"""Test helper (imported by runs started from the tests, with tests/ on PYTHONPATH): a callback that
sends a real signal to its own process after a given optimiser step, as a user's Ctrl+C or a
cluster's preemption would."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, signal_name: str = "SIGTERM"):
        self.step, self.signal_name, self.sent = int(step), signal_name, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))
