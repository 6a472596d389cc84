"""``RunCheckpoint``: Lightning's ``ModelCheckpoint`` that refreshes ``last.ckpt`` at every epoch end."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint(s) on ``monitor`` and, with ``save_last``, a ``last.ckpt`` of the latest epoch.

    Lightning 2.5+ rewrites ``last.ckpt`` only when a top-k checkpoint was saved at the same step, so
    after an epoch whose monitored value did not improve ``last.ckpt`` would still hold an older
    epoch, and a run resumed from it would silently train those epochs again. This subclass writes
    ``last.ckpt`` wherever Lightning saves checkpoints (the end of the training epoch, or the end of
    validation when validation runs elsewhere in the epoch) if Lightning did not.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        """Save ``last.ckpt`` unless this step was already saved (or saving is off: sanity check, not fitting)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
