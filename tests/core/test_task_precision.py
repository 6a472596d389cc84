"""Every task trains one step under ``bf16-mixed`` (CPU autocast), as it would on a CUDA GPU."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from visionkit.data.datamodules import (
    MovingDigitsDataModule,
    SyntheticCaptionsDataModule,
    SyntheticMultiShapesDataModule,
    SyntheticShapesDataModule,
    SyntheticTALDataModule,
)
from visionkit.methods.delta_activation import DeltaActivationTask
from visionkit.methods.hst import HSTSegmentationTask, HSTTask
from visionkit.methods.layer_masking import LayerMaskingTask
from visionkit.methods.pg_noise_mask import NoiseMaskTask
from visionkit.methods.re2tal import Re2TALClassificationTask, Re2TALTask
from visionkit.methods.unipt import UniPTRetrievalTask, UniPTTask
from visionkit.tasks import (
    ClassificationTask,
    RetrievalBase,
    RetrievalTask,
    SegmentationTask,
    SegmenterBase,
    VideoClassificationTask,
)

VIT = {"backbone": "test_vit", "backbone_kwargs": {"patch_size": 4}}
CASES = {
    "classification_full": (ClassificationTask, {"finetune": "full"}),
    "classification_lora": (ClassificationTask, {"finetune": "lora", **VIT}),
    "layer_masking": (LayerMaskingTask, {"eval_fills": ["layer", "grey"], "removal_fractions": [0.0, 0.5]}),
    "unipt": (UniPTTask, VIT),
    "retrieval": (RetrievalTask, {"asset": "clip_shapes_tiny"}),
    "unipt_retrieval": (UniPTRetrievalTask, {"asset": "clip_shapes_tiny"}),
    "video_classification": (VideoClassificationTask, {}),
    "delta_activation": (DeltaActivationTask, {"sparsity_weight": 1e-3}),
    "hst": (HSTTask, {"backbone_kwargs": {"patch_size": 8}}),
    "segmentation_full": (SegmentationTask, {"finetune": "full", **VIT}),
    "hst_segmentation": (HSTSegmentationTask, {"backbone_kwargs": {"patch_size": 8}, "scale": 0.5}),
    "pg_noise_mask": (NoiseMaskTask, {"grid": 8, "kernel_size": 3, "sigma": 0.75, "policy_trunk": "test_resnet"}),
    "re2tal": (Re2TALTask, {"asset": "shapes_test_resnet", "head_width": 16}),
    "re2tal_classification": (Re2TALClassificationTask, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_bf16_mixed_step_trains_and_validates(case: str, tmp_path) -> None:
    cls, kwargs = CASES[case]
    torch.manual_seed(0)
    if issubclass(cls, RetrievalBase):
        data = SyntheticCaptionsDataModule(num_train=8, num_val=8, num_test=8, batch_size=8, image_size=32)
        task = cls(image_size=32, scheduler="none", **kwargs)
    elif issubclass(cls, (VideoClassificationTask, DeltaActivationTask)):
        data = MovingDigitsDataModule(num_frames=4, num_train=8, num_val=8, num_test=8, batch_size=4, image_size=24)
        task = cls(num_classes=10, image_size=24, scheduler="none", **kwargs)
    elif issubclass(cls, Re2TALTask):
        data = SyntheticTALDataModule(num_frames=12, min_length=3, max_length=4, max_segments=2,
                                      num_train=4, num_val=4, num_test=4, batch_size=4)
        task = cls(num_classes=3, image_size=16, scheduler="none", **kwargs)
    elif issubclass(cls, SegmenterBase):
        data = SyntheticMultiShapesDataModule(num_classes=3, num_train=8, num_val=8, num_test=8, batch_size=8, image_size=32)
        task = cls(num_classes=3, image_size=32, scheduler="none", **kwargs)
    else:
        data = SyntheticShapesDataModule(num_classes=3, num_train=8, num_val=8, num_test=8, batch_size=8)
        task = cls(num_classes=3, image_size=32, scheduler="none", **kwargs)
    before = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    trainer = Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=1, limit_val_batches=1,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, data)
    loss = trainer.callback_metrics["train_loss"]
    assert math.isfinite(float(loss))
    changed = [n for n, p in task.named_parameters() if p.requires_grad and not torch.equal(p.detach(), before[n])]
    assert changed, "one bf16-mixed step changed no trainable parameter"
    assert all(p.dtype == torch.float32 for p in task.parameters()), "mixed precision keeps fp32 master weights"
