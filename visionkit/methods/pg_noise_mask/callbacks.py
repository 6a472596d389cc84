"""``PolicyChart``: the noise-mask policy's statistics over the epochs so far, in the run folder and TensorBoard.

:func:`policy_figure` draws them from one or more histories ``{epoch: {"train_alpha": ..., "val_alpha": ..., ...}}``;
:func:`history_from_metrics` builds that history from a run's ``metrics.csv`` rows (the demo's plots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from visionkit.callbacks.images import add_png, run_dir

#: the logged statistics (``train_<name>``: the policy's draws; ``val_<name>``: the prior's mask).
STATS = ("alpha", "beta", "expected_m", "mask_mean", "mask_std")
#: panels of the chart: title, y label, the statistics drawn in it.
PANELS = (
    ("Beta concentrations (1 = uniform cells)", "mean", ("alpha", "beta")),
    ("mask mean", "value", ("expected_m", "mask_mean")),
    ("mask spatial std", "std", ("mask_std",)),
)

History = dict[int, dict[str, float]]


def history_from_metrics(rows: list[dict[str, str]]) -> History:
    """``{epoch: {"train_alpha": ..., "val_alpha": ..., ...}}`` from ``metrics.csv`` rows (epoch values only)."""
    history: History = {}
    keys = [f"{stage}_{name}" for stage in ("train", "val") for name in STATS]
    for row in rows:
        if not row.get("epoch"):
            continue
        values = {k: float(row[k]) for k in keys if row.get(k)}
        if values:
            history.setdefault(int(row["epoch"]), {}).update(values)
    return history


def policy_figure(histories: dict[str, History], title: str = "noise-mask policy", stages: tuple[str, ...] = ("train", "val")) -> Any:
    """A matplotlib figure of the statistics over epochs of one or more runs (``{label: history}``, label ``""`` for
    one run): Beta ``alpha``/``beta``, ``E[m]`` and the mask mean, the mask's spatial std; solid lines for
    training (the policy's draws), dashed for validation (one mask from the prior per batch)."""
    from visionkit.utils.viz import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.2), squeeze=False)
    for ax, (panel_title, ylabel, names) in zip(axes[0], PANELS, strict=True):
        for k, (label, history) in enumerate(histories.items()):
            epochs = sorted(history)
            for name in names:
                colour = colours[(k * len(STATS) + STATS.index(name)) % len(colours)]
                for stage in stages:
                    key = f"{stage}_{name}"
                    points = [(e, history[e][key]) for e in epochs if key in history[e]]
                    if points:
                        xs, ys = zip(*points, strict=True)
                        ax.plot(xs, ys, "-" if stage == "train" else "--", marker="o", markersize=3, color=colour,
                                label=" ".join(filter(None, (label, stage, name))))
        if "alpha" in names:
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class PolicyChart(pl.Callback):
    """After each training epoch and its validation, draw the epoch values of ``train_<stat>`` and ``val_<stat>``
    (``alpha``, ``beta``, ``expected_m``, ``mask_mean``, ``mask_std``) over the epochs so far into
    ``<log_dir>/images/val/epoch{E:03d}_policy.png`` and TensorBoard (``val/policy``), rank zero only.

    The history is kept in the callback's state, so a resumed run continues its curves.
    """

    def __init__(self) -> None:
        self.history: History = {}
        self.saved: list[Path] = []

    def _record(self, trainer: pl.Trainer, stage: str) -> None:
        metrics = trainer.callback_metrics
        values = {f"{stage}_{n}": float(metrics[f"{stage}_{n}"]) for n in STATS if f"{stage}_{n}" in metrics}
        if values:
            self.history.setdefault(int(trainer.current_epoch), {}).update(values)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer, "val")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, "train")  # the epoch values of this epoch are there by now; validation ran before
        log_dir = run_dir(trainer)  # every rank asks: a collective under DDP
        if log_dir is not None and self.history:
            self._draw(trainer, log_dir)

    @rank_zero_only
    def _draw(self, trainer: pl.Trainer, log_dir: Path) -> None:
        from visionkit.utils.viz import save_figure

        epoch = trainer.current_epoch
        fig = policy_figure({"": self.history}, f"noise-mask policy up to epoch {epoch}")
        path = save_figure(fig, log_dir / "images" / "val" / f"epoch{epoch:03d}_policy.png")
        self.saved.append(path)
        add_png(trainer, path, "val/policy")

    def state_dict(self) -> dict[str, Any]:
        return {"history": {int(e): dict(v) for e, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {int(e): dict(v) for e, v in state_dict.get("history", {}).items()}
