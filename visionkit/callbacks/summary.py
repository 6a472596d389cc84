"""``RunSummary``: at the end of ``fit``, print where the run's files are and its final metrics."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl


def run_folder(trainer: pl.Trainer) -> Path | None:
    """The folder of the first logger that writes one (None with no logger or under ``fast_dev_run``)."""
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir is not None and Path(log_dir).is_dir():
            return Path(log_dir)
    return None


def final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Scalar epoch-level metrics of the last epoch, by name.

    Left out: ``*_step`` values, ``x`` when ``x_epoch`` is there, and learning rates (``lr-*``).
    """
    metrics = trainer.callback_metrics
    return {
        key: float(value)
        for key, value in sorted(metrics.items())
        if value.numel() == 1 and not key.endswith("_step") and f"{key}_epoch" not in metrics and not key.startswith("lr-")
    }


def summary_lines(trainer: pl.Trainer) -> list[str]:
    """The lines :class:`RunSummary` prints: run folder (+ TensorBoard command), metrics, best checkpoint."""
    lines = []
    folder = run_folder(trainer)
    if folder is not None:
        lines.append(f"Run folder: {folder}  (curves: tensorboard --logdir {folder.parent.parent})")
    metrics = final_metrics(trainer)
    if metrics:
        shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        lines.append(f"Final metrics (epoch {trainer.current_epoch - 1}, step {trainer.global_step}): {shown}")
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "best_model_path", ""):
        score = "" if ckpt.best_model_score is None else f" ({ckpt.monitor}={float(ckpt.best_model_score):.4g})"
        lines.append(f"Best checkpoint: {ckpt.best_model_path}{score}")
    return lines


class RunSummary(pl.Callback):
    """Print the run folder, the final metrics and the best checkpoint when ``fit`` ends (rank zero only)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            lines = summary_lines(trainer)
            if lines:
                print("\n".join(lines), flush=True)
