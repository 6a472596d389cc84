"""``PolicyChart`` and its figure: the history read from ``metrics.csv`` rows and from the trainer's epoch values,
the PNG per epoch, the history kept through a checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from visionkit.methods.pg_noise_mask import PolicyChart, history_from_metrics, policy_figure

ROWS = [
    {"epoch": "0", "step": "3", "train_alpha": "1.6", "train_beta": "1.7", "val_alpha": "", "train_loss": "9.1"},
    {"epoch": "0", "step": "3", "val_alpha": "1.65", "val_mask_std": "0.08"},
    {"epoch": "", "step": "4", "lr-policy/pg1": "0.001"},
    {"epoch": "1", "step": "7", "train_alpha": "1.2", "val_alpha": "1.3"},
]


def test_history_from_metrics_keeps_the_statistics_of_each_epoch() -> None:
    assert history_from_metrics(ROWS) == {
        0: {"train_alpha": 1.6, "train_beta": 1.7, "val_alpha": 1.65, "val_mask_std": 0.08},
        1: {"train_alpha": 1.2, "val_alpha": 1.3},
    }


def test_policy_figure_draws_a_line_per_logged_statistic() -> None:
    fig = policy_figure({"": history_from_metrics(ROWS)}, "one run")
    lines = [line.get_label() for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert lines == ["train alpha", "val alpha", "train beta", "val mask_std"]
    fig = policy_figure({"a": history_from_metrics(ROWS), "b": history_from_metrics(ROWS[:1])}, "two runs", ("train",))
    lines = [line.get_label() for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert lines == ["a train alpha", "a train beta", "b train alpha", "b train beta"]
    from visionkit.utils.viz import pyplot

    pyplot().close(fig)


def _trainer(tmp_path, epoch: int, metrics: dict[str, float], sanity: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()}, current_epoch=epoch, sanity_checking=sanity,
        state=SimpleNamespace(fn="fit"), loggers=[SimpleNamespace()], log_dir=str(tmp_path), global_step=epoch,
    )


def test_policy_chart_records_validation_then_training_and_saves_a_png_per_epoch(tmp_path) -> None:
    chart = PolicyChart()
    chart.on_validation_end(_trainer(tmp_path, 0, {"val_alpha": 9.0}, sanity=True), None)  # sanity check: ignored
    for epoch in (0, 1):
        values = {"val_alpha": 1.5 - epoch / 4, "val_mask_std": 0.0625, "train_alpha": 2.0, "train_loss": 3.0}
        chart.on_validation_end(_trainer(tmp_path, epoch, {k: v for k, v in values.items() if k.startswith("val_")}), None)
        chart.on_train_epoch_end(_trainer(tmp_path, epoch, values), None)
    assert chart.history == {0: {"val_alpha": 1.5, "val_mask_std": 0.0625, "train_alpha": 2.0},
                             1: {"val_alpha": 1.25, "val_mask_std": 0.0625, "train_alpha": 2.0}}
    assert [p.name for p in chart.saved] == ["epoch000_policy.png", "epoch001_policy.png"]
    assert all(p.is_file() and p.parent == tmp_path / "images" / "val" for p in chart.saved)
    resumed = PolicyChart()
    resumed.load_state_dict(chart.state_dict())
    assert resumed.history == chart.history
