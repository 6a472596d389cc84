"""Helpers shared by tests (importable as ``tests.helpers`` from subprocesses run at the repo root)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest

from visionkit.utils.runs import epoch_values, read_metrics

__all__ = ["FailAt", "KillAt", "cli_error_line", "epoch_values", "last_value", "read_metrics", "run_dirs"]


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last non-empty value of a ``metrics.csv`` column."""
    values = [r[key] for r in rows if r.get(key)]
    if not values:
        raise KeyError(f"no '{key}' in metrics")
    return float(values[-1])


def run_dirs(root: str | Path = "logs") -> list[Path]:
    """Run folders (``<root>/<name>/version_N``), oldest first."""
    return sorted(Path(root).glob("*/version_*"), key=lambda p: (p.parent.name, int(p.name.split("_")[1])))


def cli_error_line(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """Run ``visionkit <args>`` in-process; assert exit code 2 and exactly one error line, and return it."""
    from visionkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("visionkit: error:")]
    assert len(lines) == 1
    return lines[0]


class KillAt(pl.Callback):
    """SIGKILL the process at a training batch, as a crash or a pre-empted job would."""

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class FailAt(pl.Callback):
    """Raise ``RuntimeError`` at a training batch, as a bug in a training step would."""

    def __init__(self, epoch: int = 0, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError(f"FailAt: epoch {self.epoch} batch {self.batch}")
