"""Helpers shared by tests (importable as ``tests.helpers`` from subprocesses run at the repo root)."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl

from visionkit.utils.runs import epoch_values, last_value, read_metrics, run_dirs

__all__ = ["KillAt", "epoch_values", "last_value", "read_metrics", "run_dirs"]


class KillAt(pl.Callback):
    """SIGKILL the process at a training batch, as a crash or a pre-empted job would."""

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
