"""Image-text datamodules: generated captioned shapes, caption CSV and Karpathy JSON splits, collate, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data.files import write_csv, write_karpathy, write_png
from tests.helpers import error_of
from visionkit.data import DatasetNotFoundError
from visionkit.data.datamodules import (
    CaptionCSVDataModule,
    CaptionDataModule,
    KarpathyDataModule,
    SyntheticCaptionsDataModule,
)
from visionkit.data.errors import CaptionFileError


def test_synthetic_datamodule_splits_and_collate() -> None:
    dm = SyntheticCaptionsDataModule(num_train=16, num_val=8, num_test=8, batch_size=4, image_size=16)
    assert isinstance(dm, CaptionDataModule) and dm.num_classes == 0 and dm.task == "retrieval"
    dm.setup("fit")
    train, val, test = dm.dataset("train"), dm.dataset("val"), dm.dataset("test")
    assert len(train) == 16 and len(val) == 8 and len(test) == 8
    assert not any(torch.equal(train[i]["image"], val[i]["image"]) for i in range(8))
    assert not any(torch.equal(test[i]["image"], val[i]["image"]) for i in range(8))
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4
    assert all(isinstance(c, str) for c in batch["caption"])
    assert batch["image_id"].dtype == torch.int64 and batch["image_id"].shape == (4,)
    assert batch["image"].shape == (4, 3, 16, 16)
    assert batch["caption"] == [train.captions[int(i)] for i in batch["image_id"]]
    # val keeps the dataset order
    ids = torch.cat([b["image_id"] for b in dm.val_dataloader()])
    assert ids.tolist() == list(range(8))
    with pytest.raises(ValueError, match="unknown describe entry"):
        SyntheticCaptionsDataModule(describe=["colour", "texture"])


def test_caption_csv_datamodule(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / f"{i}.png", 40 * i)
    train = write_csv(tmp_path / "train.csv", [[f"{i}.png", f"caption {i}"] for i in range(4)])
    val = write_csv(tmp_path / "val.csv", [["0.png", "v0"], ["0.png", "v1"], ["1.png", "v2"]])
    dm = CaptionCSVDataModule(str(train), str(val), image_size=8, batch_size=2)
    assert dm.num_classes == 0 and dm.task == "retrieval"
    dm.setup("fit")
    dm.setup("test")  # the missing test split is not built
    batch = next(iter(dm.val_dataloader()))
    assert batch["caption"] == ["v0", "v1"] and batch["image_id"].tolist() == [0, 0]
    captions = sorted(c for b in dm.train_dataloader() for c in b["caption"])
    assert captions == [f"caption {i}" for i in range(4)]
    with pytest.raises(ValueError, match="no test split: test_csv was not given") as exc:
        dm.test_dataloader()
    error_of(exc)
    # a bad file fails when the datamodule is built
    with pytest.raises(DatasetNotFoundError, match="nope.csv"):
        CaptionCSVDataModule(str(train), str(tmp_path / "nope.csv"))
    with pytest.raises(CaptionFileError, match="data row 1"):
        CaptionCSVDataModule(str(train), test_csv=str(write_csv(tmp_path / "t.csv", [["9.png", "x"]])))


def test_karpathy_datamodule(tmp_path: Path) -> None:
    path = write_karpathy(tmp_path)
    root = str(tmp_path / "images")
    dm = KarpathyDataModule(str(path), root, max_captions_per_image=2, batch_size=3, image_size=8)
    assert "val" in dm.datasets and dm.num_classes == 0
    dm.setup("fit")
    assert len(dm.dataset("train")) == 6 and dm.dataset("train").num_images == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["image_id"].tolist() == [0, 0, 1] and batch["image_id"].dtype == torch.int64
    assert batch["caption"] == ["image 2 caption 0", "image 2 caption 1", "image 5 caption 0"]
    (tmp_path / "images" / "val2014" / "img5.png").unlink()
    with pytest.raises(CaptionFileError, match=r"images\[5\] \('img5.png'\): no image file"):
        KarpathyDataModule(str(path), str(tmp_path / "images"))
