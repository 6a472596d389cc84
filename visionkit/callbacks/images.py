"""``ImageLogger``: PNG grids of what a task did, under ``<log_dir>/images/<stage>/``, and in TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor


def _take(value: Any, n: int) -> Any:
    if isinstance(value, Tensor) and value.ndim > 0:
        return value[:n]
    if isinstance(value, dict):
        return {k: _take(v, n) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(value[:n])
    return value


def save_grid(images: Tensor, path: str | Path, nrow: int = 8) -> Tensor:
    """Save ``(B, 3, H, W)`` images in [0, 1] as one PNG grid; returns the ``(3, H', W')`` grid."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return grid


def run_dir(trainer: pl.Trainer) -> Path | None:
    """The run folder (``trainer.log_dir``), or ``None`` without a logger.

    Under DDP ``trainer.log_dir`` is a broadcast from rank 0, a collective: call this on **every** rank
    (in the hook itself), then hand the path to the rank-zero writer. Asking inside a
    ``rank_zero_only`` function hangs the run.
    """
    if not trainer.loggers:
        return None
    log_dir = trainer.log_dir
    return None if log_dir is None else Path(log_dir)


def add_png(trainer: pl.Trainer, path: str | Path, tag: str) -> None:
    """Add the PNG at ``path`` to every TensorBoard-like logger of ``trainer`` under ``tag``."""
    experiments = [getattr(logger, "experiment", None) for logger in trainer.loggers]
    experiments = [e for e in experiments if hasattr(e, "add_image")]
    if not experiments:
        return
    import numpy as np
    from PIL import Image

    image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    for experiment in experiments:
        experiment.add_image(tag, image, global_step=trainer.global_step)


class ImageLogger(pl.Callback):
    """Render the first batch of validation / test / predict with ``pl_module.visualize``.

    Saves ``<log_dir>/images/<stage>/epoch{E:03d}_{name}.png`` and, when a TensorBoard logger is
    attached, logs the same grid there. Does nothing without a log dir (``fast_dev_run``,
    ``logger=False``) and on non-zero ranks.

    Args:
        num_samples: images per grid.
        every_n_epochs: validation grids every this many epochs (the last epoch always).
    """

    def __init__(self, num_samples: int = 16, every_n_epochs: int = 1) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = max(1, every_n_epochs)
        self.saved: list[Path] = []

    def _log_dir(self, trainer: pl.Trainer) -> Path | None:
        return None if trainer.sanity_checking else run_dir(trainer)

    def _render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, outputs: Any, stage: str) -> None:
        log_dir = self._log_dir(trainer)  # a collective under DDP: every rank must ask
        if log_dir is not None and hasattr(pl_module, "visualize"):
            self._save(trainer, pl_module, batch, outputs, stage, log_dir)

    @rank_zero_only
    def _save(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, outputs: Any, stage: str, log_dir: Path
    ) -> None:
        batch = _take(batch, self.num_samples)
        outputs = _take(outputs, self.num_samples) if isinstance(outputs, dict) else None
        with torch.no_grad():
            panels = pl_module.visualize(batch, outputs)
        for name, images in panels.items():
            path = log_dir / "images" / stage / f"epoch{trainer.current_epoch:03d}_{name}.png"
            grid = save_grid(images, path)
            self.saved.append(path)
            for logger in trainer.loggers:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_image"):
                    experiment.add_image(f"{stage}/{name}", grid, global_step=trainer.global_step)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1
        if batch_idx == 0 and dataloader_idx == 0 and (trainer.current_epoch % self.every_n_epochs == 0 or last):
            self._render(trainer, pl_module, batch, outputs, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            self._render(trainer, pl_module, batch, outputs, "test")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            self._render(trainer, pl_module, batch, outputs, "predict")
