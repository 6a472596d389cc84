"""``DensityChart``: a bar chart of the validation temporal density per layer, in the run folder and TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from visionkit.callbacks.images import add_png, run_dir


class DensityChart(pl.Callback):
    """After each validation, draw ``val_density/<layer>`` (nonzero deltas / deltas) and the step ``theta/<layer>``
    per layer into ``<log_dir>/images/val/epoch{E:03d}_density.png`` and TensorBoard (``val/density``)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_dir = None if trainer.sanity_checking else run_dir(trainer)  # every rank asks (a collective under DDP)
        if log_dir is not None:
            self._draw(trainer, log_dir)

    @rank_zero_only
    def _draw(self, trainer: pl.Trainer, log_dir: Path) -> None:
        from visionkit.utils.viz import pyplot, save_figure

        metrics = trainer.callback_metrics
        density = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("val_density/")}
        if not density:
            return
        theta = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("theta/")}
        plt = pyplot()
        names = list(density)
        fig, axes = plt.subplots(2 if theta else 1, 1, figsize=(max(6, 0.35 * len(names)), 5 if theta else 3), squeeze=False)
        axes[0, 0].bar(range(len(names)), [density[n] for n in names], color="tab:blue")
        overall = metrics.get("val_density")
        title = f"temporal density per layer (epoch {trainer.current_epoch}"
        axes[0, 0].set_title(title + (f", overall {float(overall):.3f})" if overall is not None else ")"))
        axes[0, 0].set_ylabel("nonzero deltas")
        axes[0, 0].set_xticks(range(len(names)), [""] * len(names))
        if theta:
            axes[1, 0].bar(range(len(names)), [theta.get(n, 0.0) for n in names], color="tab:orange")
            axes[1, 0].set_ylabel("step |theta|")
        axes[-1, 0].set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        fig.tight_layout()
        path = log_dir / "images" / "val" / f"epoch{trainer.current_epoch:03d}_density.png"
        save_figure(fig, path)
        add_png(trainer, path, "val/density")
