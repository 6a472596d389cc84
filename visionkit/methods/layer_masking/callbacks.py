"""``MaskingProtocolEvaluator``: the masking protocols as a Lightning callback, and their CSV/PNG writers.

:class:`~visionkit.methods.layer_masking.task.LayerMaskingTask` returns the evaluator from
``configure_callbacks``. On every validation/test batch the evaluator runs the protocols of
:mod:`.protocols` on the batch with the task's masked forward; at the end of the loop it sums
the counters across ranks, logs ``<stage>_acc_<fill>_<pct>``, ``<stage>_entropy_<fill>_<pct>``
and ``<stage>_leak_<fill>``, and (rank zero) writes
``<log_dir>/layer_masking/<stage>_epochNNN_{removal,leakage}.{csv,png}``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from visionkit.callbacks.images import run_dir
from visionkit.methods.layer_masking.protocols import MaskingProtocols
from visionkit.utils.viz import pyplot, save_figure

__all__ = ["MaskingProtocolEvaluator", "plot_leakage", "plot_removal", "write_csv"]


class MaskingProtocolEvaluator(pl.Callback):
    """Runs the removal curves and the mask-shape leakage test during validate/test.

    The module it evaluates must provide ``masked_model()`` (``(normalised images, keep_mask)
    -> logits``) and ``normalize`` (pixel space [0, 1] -> model input).

    Args:
        fills, fractions, num_classes, patch_size, region, seed, blur_sigma, leakage: see
            :class:`~visionkit.methods.layer_masking.protocols.MaskingProtocols`.
        during_fit: also run in fit's validation loops (never in the sanity check).

    Attributes:
        results: ``{stage: MaskingProtocols.compute() result}`` of the last loop of each stage.
        files: the CSV/PNG paths written by the last loop.
    """

    def __init__(
        self, fills: Sequence[str], fractions: Sequence[float], num_classes: int, patch_size: int = 4,
        region: str = "auto", seed: int = 0, blur_sigma: float = 2.0, leakage: bool = True, during_fit: bool = False,
    ) -> None:
        self.protocols = MaskingProtocols(fills, fractions, num_classes, patch_size, region, seed, blur_sigma, leakage)
        self.during_fit = during_fit
        self.results: dict[str, Any] = {}
        self.files: list[Path] = []
        self._on = False

    # ---- loop hooks -----------------------------------------------------------------------
    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        fitting = trainer.state.fn == "fit"
        self._on = not trainer.sanity_checking and (stage == "test" or not fitting or self.during_fit)
        if self._on:
            self.protocols.to(pl_module.device)
            self.protocols.reset()

    def _batch(self, pl_module: pl.LightningModule, batch: dict[str, Any], batch_idx: int) -> None:
        if self._on:
            self.protocols.update(pl_module.masked_model(), batch["image"], batch["label"], batch.get("mask"),
                                  batch_idx, normalize=pl_module.normalize)

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self._on:
            return
        self._on = False
        for buf in self.protocols.buffers():
            buf.copy_(trainer.strategy.reduce(buf, reduce_op="sum"))
        results = self.protocols.compute()
        self.results[stage] = results
        for row in results["removal"]:
            pct = round(100 * row["fraction"])
            pl_module.log(f"{stage}_acc_{row['fill']}_{pct:02d}", row["accuracy"], sync_dist=False)
            pl_module.log(f"{stage}_entropy_{row['fill']}_{pct:02d}", row["entropy"], sync_dist=False)
        for row in results["leakage"]:
            pl_module.log(f"{stage}_leak_{row['fill']}", row["leak"], sync_dist=False)
        log_dir = run_dir(trainer)  # every rank asks: a collective under DDP
        if log_dir is not None:
            self._write(trainer, stage, results, log_dir)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the counters when this validation loop runs the protocols."""
        self._start(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the counters."""
        self._start(trainer, pl_module, "test")

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Run the protocols on the batch."""
        self._batch(pl_module, batch, batch_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                          batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Run the protocols on the batch."""
        self._batch(pl_module, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sum the counters across ranks, log the curves, write CSV and PNG."""
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sum the counters across ranks, log the curves, write CSV and PNG."""
        self._finish(trainer, pl_module, "test")

    # ---- files ----------------------------------------------------------------------------
    @rank_zero_only
    def _write(self, trainer: pl.Trainer, stage: str, results: dict[str, Any], log_dir: Path) -> None:
        folder = log_dir / "layer_masking"
        epoch = trainer.current_epoch
        stem = f"{stage}_epoch{epoch:03d}"
        region = results["region"]
        rows = [{"stage": stage, "epoch": epoch, "region": region, **r} for r in results["removal"]]
        self.files = [
            write_csv(rows, folder / f"{stem}_removal.csv"),
            plot_removal(results["removal"], folder / f"{stem}_removal.png",
                         f"{stage}: random {self.protocols.patch}px cells removed ({region} region)"),
        ]
        if results["leakage"]:
            rows = [{"stage": stage, "epoch": epoch, **r} for r in results["leakage"]]
            self.files += [
                write_csv(rows, folder / f"{stem}_leakage.csv"),
                plot_leakage(results["leakage"], folder / f"{stem}_leakage.png", f"{stage}: mask-shape leakage"),
            ]


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write dict rows as CSV (columns from the first row); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_removal(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Accuracy (%) and class entropy (nats) against the removed fraction (%), one line per fill; saves a PNG."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for fill in dict.fromkeys(r["fill"] for r in rows):
        pts = [r for r in rows if r["fill"] == fill]
        style = "-o" if fill.startswith("layer") else "--s"
        axes[0].plot([100 * r["fraction"] for r in pts], [100 * r["accuracy"] for r in pts], style, label=fill, ms=4)
        axes[1].plot([100 * r["fraction"] for r in pts], [r["entropy"] for r in pts], style, label=fill, ms=4)
    axes[0].set(xlabel="patches removed (%)", ylabel="accuracy (%)", ylim=(0, 100))
    axes[1].set(xlabel="patches removed (%)", ylabel="class entropy (nats)")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_leakage(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Accuracy (%) with an object-shaped hole vs a bounding-box hole, per fill; saves a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [100 * r["exact_hole_acc"] for r in rows], 0.4, label="object-shaped hole")
    ax.bar([x + 0.2 for x in xs], [100 * r["bbox_hole_acc"] for r in rows], 0.4, label="bounding-box hole")
    ax.set_xticks(list(xs), [f"{r['fill']}\nleak {100 * r['leak']:.0f}" for r in rows], fontsize=8)
    ax.set(ylabel="accuracy with object removed (%)", ylim=(0, 100))
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
