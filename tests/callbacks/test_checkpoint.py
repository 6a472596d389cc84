"""``RunCheckpoint``: ``last.ckpt`` follows every epoch, also when the monitored value does not improve."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer

from visionkit.callbacks import RunCheckpoint
from visionkit.data.datamodules import SyntheticShapesDataModule
from visionkit.tasks import ClassificationTask


def test_last_checkpoint_is_the_latest_epoch_even_without_improvement(tmp_path) -> None:
    # a monitored value that gets worse every epoch: Lightning saves no top-k after epoch 0
    task = ClassificationTask(backbone="test_resnet", num_classes=3, image_size=32, scheduler="none")
    checkpoint = RunCheckpoint(dirpath=tmp_path, monitor="epoch_index", mode="min", save_last=True, save_top_k=1)

    def on_validation_epoch_end() -> None:
        task.log("epoch_index", float(task.current_epoch))

    task.on_validation_epoch_end = on_validation_epoch_end
    data = SyntheticShapesDataModule(num_classes=3, num_train=8, num_val=8, num_test=8, batch_size=8)
    trainer = Trainer(accelerator="cpu", max_epochs=3, callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(task, data)
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 2 and saved["global_step"] == 3
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    assert best["epoch"] == 0
    assert saved["SyntheticShapesDataModule"] == {"epoch": 3}, "the datamodule records the epoch to resume at"
