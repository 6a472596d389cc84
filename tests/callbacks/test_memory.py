"""``ActivationMemory``: the Lightning callback logs the meter's numbers at every training step, equal to
the hand count of ``measure_training_step`` (tests/memory/test_meter.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from tests.helpers import mlp

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

F32 = 4  # bytes per float32 element


# ---- Lightning callback -----------------------------------------------------------------------------------
def test_callback_logs_every_step_and_matches_function(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from visionkit.callbacks import ActivationMemory
    from visionkit.core.task import VisionTask

    class MLPTask(VisionTask):
        def __init__(self) -> None:
            super().__init__(lr=1.0e-2, weight_decay=0.0, scheduler="none")

        def configure_models(self) -> None:
            self.model = mlp()

        def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
            return {"loss": self.model(batch["image"]).sum()}

    data = [{"image": torch.randn(4)} for _ in range(9)]
    task = MLPTask()
    callback = ActivationMemory()
    trainer = Trainer(
        max_steps=3, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="m"), callbacks=[callback],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=3))
    report = callback.last_report
    assert report.activation_bytes == 240  # the hand count in tests/memory/test_meter.py: same network, same batch size
    total = sum(p.numel() for p in task.parameters())
    assert report.gradient_bytes == total * F32 and report.optimizer_bytes == 2 * total * F32 + 6 * F32
    metrics = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    column = header.index("mem/activations_mib")
    values = [row.split(",")[column] for row in metrics[1:] if row.split(",")[column]]
    assert len(values) == 3 and all(float(v) == pytest.approx(240 / 2**20) for v in values)
    assert "mem/total_mib" in header and "mem/peak_rss_mib" in header and "mem/step_time_s" in header
