"""The embedded default: configs/quickstart.yaml reaches >= 90 % validation accuracy (a real run)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.helpers import epoch_values, read_metrics, run_dirs
from visionkit.cli import main


@pytest.mark.slow
def test_quickstart_reaches_90_percent() -> None:
    main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.enable_progress_bar", "false"])
    (run,) = run_dirs()
    accuracy = epoch_values(read_metrics(run), "val_acc")
    assert sorted(accuracy) == list(range(6))
    assert accuracy[max(accuracy)] >= 0.90, accuracy
    assert (run / "config.yaml").is_file() and list((run / "images" / "val").glob("*.png"))
    assert (run / "checkpoints" / "last.ckpt").is_file()
