"""Helpers shared by tests (importable as ``tests.helpers`` from subprocesses run at the repo root)."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import lightning.pytorch as pl


class KillAt(pl.Callback):
    """SIGKILL the process at a training batch, as a crash or a pre-empted job would."""

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def read_metrics(log_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` in a run folder."""
    with open(Path(log_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last non-empty value of a column."""
    values = [r[key] for r in rows if r.get(key)]
    if not values:
        raise KeyError(f"no '{key}' in metrics")
    return float(values[-1])


def epoch_values(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epoch: value}`` of a per-epoch column."""
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key) and r.get("epoch")}


def run_dirs(root: str | Path = "logs") -> list[Path]:
    """Run folders (``<root>/<name>/version_N``), oldest first."""
    return sorted(Path(root).glob("*/version_*"), key=lambda p: (p.parent.name, int(p.name.split("_")[1])))
