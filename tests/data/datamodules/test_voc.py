"""``VOCSegmentationDataModule``: class counts and task for the CLI links, loaders of masks and multi-hot labels,
training crops tagged with the epoch, the splits checked in the constructor, and a missing mask folder as one
CLI error line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data.voc_files import write_voc
from tests.helpers import cli_error_line
from visionkit.data.datamodules import VOCSegmentationDataModule
from visionkit.data.errors import DatasetNotFoundError
from visionkit.metrics import SegmentationIoU


def test_class_counts_and_loaders(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC2012")
    dm = VOCSegmentationDataModule(str(root), image_size=24, batch_size=2)
    assert dm.num_classes == 20 and dm.num_mask_classes == 21 and dm.task == "multilabel"
    assert dm.ignore_index == 255 and dm.mask_classes[0] == "background" and dm.classes[0] == "aeroplane"
    assert dm.image_size == 24 and VOCSegmentationDataModule(str(root)).image_size == 320
    assert len(dm.dataset("train")) == 4 and len(dm.dataset("val")) == 2 and len(dm.dataset("test")) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and batch["mask"].shape == (2, 24, 24)
    assert batch["mask"].dtype == torch.int64 and batch["label"].shape == (2, 20)
    assert batch["orig_size"].shape == (2, 2) and len(batch["path"]) == 2
    val = next(iter(dm.val_dataloader()))
    assert val["index"].tolist() == [0, 1]
    assert torch.equal(val["mask"], torch.stack([dm.dataset("val")[i]["mask"] for i in range(2)]))
    metric = SegmentationIoU(dm.num_mask_classes, dm.ignore_index)
    metric.update(val["mask"].masked_fill(val["mask"] == 255, 0), val["mask"])  # predictions must be classes
    assert float(metric.compute()["miou"]) == 1.0


def test_training_items_are_cropped_per_epoch_and_evaluation_items_are_not(tmp_path: Path) -> None:
    dm = VOCSegmentationDataModule(str(write_voc(tmp_path)), image_size=24, batch_size=4, crop_scale=(0.2, 0.5))
    loader = dm.train_dataloader()
    assert all(isinstance(key, tuple) and key[1] == 0 for key in loader.sampler)  # (index, epoch) keys
    train, val = dm.dataset("train"), dm.dataset("val")
    assert train.augment and not val.augment and not dm.dataset("test").augment
    assert not torch.equal(train[(0, 0)]["image"], train[(0, 1)]["image"])
    assert torch.equal(val[0]["image"], val[0]["image"])
    plain = VOCSegmentationDataModule(str(tmp_path), image_size=24, augment=False)
    assert not plain.dataset("train").augment


def test_splits_and_masks_are_checked_in_the_constructor(tmp_path: Path) -> None:
    root = write_voc(tmp_path, splits={"train": [0, 1], "val": [2], "trainval": [0, 1, 2]})
    dm = VOCSegmentationDataModule(str(root), train_split="trainval", test_split="train")
    assert len(dm.dataset("train")) == 3 and len(dm.dataset("test")) == 2
    with pytest.raises(DatasetNotFoundError, match=r"no split file ImageSets/Segmentation/test\.txt "
                       r"\(split files present: train, trainval, val\)"):
        VOCSegmentationDataModule(str(root), test_split="test")
    with pytest.raises(DatasetNotFoundError, match="has no SegmentationClassAug/ folder"):
        VOCSegmentationDataModule(str(root), masks="SegmentationClassAug")


def test_a_root_without_masks_is_one_cli_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_voc(tmp_path / "voc", masks="SegmentationClassAug")
    args = ["fit", "--model", "ClassificationTask", "--data", "VOCSegmentationDataModule",
            "--data.root", str(root), "--trainer.accelerator", "cpu"]
    line = cli_error_line(capsys, args)
    assert "has no SegmentationClass/ folder" in line and "pass masks='SegmentationClassAug'" in line
