"""``SegmenterBase`` / ``SegmentationTask``: scores at the mask's size, the masked loss, mIoU logging, panels, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer

from visionkit.data.datamodules import SyntheticMultiShapesDataModule
from visionkit.tasks import SegmentationTask

VIT = {"backbone": "test_vit", "backbone_kwargs": {"patch_size": 8}, "image_size": 32}


def quiet_trainer(**kwargs) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, **kwargs)


def test_linear_head_on_the_last_layer_is_the_only_trainable_part() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(num_classes=3, **VIT)
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert trainable == ["model.side_network.classifier.weight", "model.side_network.classifier.bias"]
    scores = task(torch.rand(2, 3, 32, 32))
    assert scores.shape == (2, 4, 32, 32)  # background + 3 classes, at the input size
    full = SegmentationTask(num_classes=3, finetune="full", **VIT)
    assert all(p.requires_grad for p in full.parameters())


def test_loss_skips_ignored_pixels_and_is_zero_not_nan_when_all_are_ignored() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(num_classes=3, **VIT)
    image = torch.rand(2, 3, 32, 32)
    mask = torch.randint(0, 4, (2, 32, 32))
    mask[:, :8] = 255
    out = task.compute_loss({"image": image, "mask": mask}, "train")
    expected = F.cross_entropy(task(image), mask, ignore_index=255)
    assert torch.allclose(out["loss"], expected, rtol=1e-5, atol=1e-6)
    everything_ignored = task.compute_loss({"image": image, "mask": torch.full_like(mask, 255)}, "train")["loss"]
    assert float(everything_ignored) == 0.0


def test_fit_logs_dataset_level_miou_and_per_class_iou() -> None:
    torch.manual_seed(0)
    data = SyntheticMultiShapesDataModule(num_classes=3, num_train=16, num_val=16, num_test=16, batch_size=8, image_size=32)
    task = SegmentationTask(num_classes=3, class_names=["a", "b", "c"], scheduler="none", **VIT)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(task, data)
    metrics = trainer.callback_metrics
    for key in ("val_miou", "val_pixel_acc", "val_iou/background", "val_iou/a", "train_miou"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val_miou"]) <= 1.0
    assert math.isfinite(float(metrics["val_loss"]))
    test = trainer.test(task, data, verbose=False)[0]
    assert 0.0 <= test["test_miou"] <= 1.0


def test_predict_and_panels() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(num_classes=3, **VIT).eval()
    batch = {"image": torch.rand(2, 3, 32, 32), "mask": torch.randint(0, 4, (2, 32, 32)), "index": torch.arange(2)}
    out = task.predict_step(batch, 0)
    assert out["mask"].shape == (2, 32, 32) and out["mask"].dtype == torch.int64
    assert torch.allclose(out["probs"].sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert torch.equal(out["index"], batch["index"])
    panels = task.visualize(batch, None)
    assert set(panels) == {"input", "prediction", "ground_truth"}
    assert all(p.shape == (2, 3, 32, 32) for p in panels.values())


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ignore_index": 2}, "ignore_index=2 is a class index"),
        ({"class_names": ["a"]}, "class_names must name the 3 foreground classes"),
        ({"finetune": "lora"}, "finetune must be 'linear' or 'full'"),
        ({"convention": "voc"}, "convention must be 'official' or 'torchmetrics'"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words) as err:
        SegmentationTask(num_classes=3, **{**VIT, **kwargs})
    assert "\n" not in str(err.value)


def test_a_batch_without_masks_is_refused() -> None:
    task = SegmentationTask(num_classes=3, **VIT)
    with pytest.raises(ValueError, match="the batch has no 'mask'"):
        task.compute_loss({"image": torch.rand(2, 3, 32, 32), "label": torch.zeros(2, 3)}, "train")
