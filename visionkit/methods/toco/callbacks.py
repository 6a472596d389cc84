"""``ToCoPredictionWriter``: predicted masks as VOC-palette PNGs (and CAM overlays) in the run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from visionkit.callbacks.images import run_dir
from visionkit.utils.runs import claim_numbered_dir

__all__ = ["ToCoPredictionWriter"]


def _stems(outputs: dict[str, Any], batch: dict[str, Any], count: int) -> list[str]:
    """File stems of a batch's items: the image file's stem, else the zero-padded dataset index."""
    paths = outputs.get("path", batch.get("path"))
    if paths is not None and len(paths) == count:
        return [Path(str(p)).stem for p in paths]
    index = outputs.get("index", batch.get("index"))
    if isinstance(index, Tensor) and index.numel() == count:
        return [f"{int(i):06d}" for i in index.tolist()]
    raise ValueError("ToCoPredictionWriter needs the batch's 'path' or 'index' to name the mask files")


def _save(image: Any, path: Path) -> None:
    """Write a PIL image to ``path`` through a temporary name, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


class ToCoPredictionWriter(pl.Callback):
    """Write each predicted mask as ``<run>/predictions_N/masks/<stem>.png``: a palette PNG whose pixel values
    are the class indices (0 background, ``c`` class ``c``; VOC colours), read back with
    ``np.array(Image.open(path))``; masks at the image's original size when ``predict_step`` gives
    ``full_mask``. With ``cams`` (and ``cam`` in the outputs) also ``cams/<stem>.png``: the CAM heat over the
    image. ``<stem>`` is the image file's stem, else the dataset index (6 digits).

    ``predictions_N`` is a fresh folder claimed per predict run (nothing is overwritten), under the run folder
    (``trainer.log_dir``; the trainer's ``default_root_dir`` without a logger). Under DDP every rank writes
    the items it predicted.

    Args:
        cams: also write CAM overlays.
    """

    def __init__(self, cams: bool = False) -> None:
        self.cams = cams
        self.folder: Path | None = None
        self.count = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        base = run_dir(trainer) or Path(trainer.default_root_dir)  # a collective under DDP: every rank asks
        name = claim_numbered_dir(base, "predictions_").name if trainer.is_global_zero else None
        self.folder = base / trainer.strategy.broadcast(name, src=0)
        self.count = 0

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from visionkit.data.datasets.voc import colorize
        from visionkit.utils.viz import overlay

        if self.folder is None or not isinstance(outputs, dict) or "mask" not in outputs:
            return
        masks = outputs.get("full_mask") or list(outputs["mask"])
        stems = _stems(outputs, batch, len(masks))
        (self.folder / "masks").mkdir(parents=True, exist_ok=True)
        for mask, stem in zip(masks, stems, strict=True):
            _save(colorize(mask.cpu()), self.folder / "masks" / f"{stem}.png")
        self.count += len(masks)
        if self.cams and isinstance(outputs.get("cam"), Tensor):
            from PIL import Image

            (self.folder / "cams").mkdir(parents=True, exist_ok=True)
            pictures = overlay(batch["image"], outputs["cam"])
            for picture, stem in zip(pictures, stems, strict=True):
                rgb = (picture.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
                _save(Image.fromarray(rgb), self.folder / "cams" / f"{stem}.png")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank_zero_info(f"wrote {self.count} predicted masks to {self.folder / 'masks'}")
