"""``ParameterReport``: trainable / total / % parameters, printed and logged once at fit start."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from visionkit.core.params import parameter_report


class ParameterReport(pl.Callback):
    """Log ``params/trainable``, ``params/total`` and ``params/trainable_pct`` as hyperparameters."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        report = pl_module.parameter_report() if hasattr(pl_module, "parameter_report") else parameter_report(pl_module)
        rank_zero_info(f"{type(pl_module).__name__}: {report}")
        values = {"params/trainable": report.trainable, "params/total": report.total, "params/trainable_pct": report.percent}
        for logger in trainer.loggers:
            logger.log_hyperparams(values)
