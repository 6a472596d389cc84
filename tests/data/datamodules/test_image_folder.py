"""``ImageFolderDataModule``: splits by fraction or by folders, ``image_size``/``channels``/``predict_root``
checked in the constructor (one line on the CLI), items carry their index and path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data.files import write_image_folder
from tests.data.files import write_pngs as _pngs
from tests.helpers import cli_error_line
from visionkit.data.datamodules import DigitsDataModule, ImageFolderDataModule, SyntheticShapesDataModule
from visionkit.data.errors import DatasetNotFoundError


def test_image_folder_split_by_fraction(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data")
    dm = ImageFolderDataModule(str(root), val_fraction=0.25, image_size=16)
    assert dm.num_classes == 2
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 9 and len(val) == 3
    s = train[0]
    assert s["image"].shape == (3, 16, 16) and s["image"].max() <= 1


def test_image_folder_split_folders(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "d" / "train", per_class=3)
    write_image_folder(tmp_path / "d" / "val", per_class=2)
    dm = ImageFolderDataModule(str(tmp_path / "d"), image_size=8)
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 4 and len(dm.dataset("test")) == 4
    (tmp_path / "e" / "train").mkdir(parents=True)
    write_image_folder(tmp_path / "e" / "train")
    with pytest.raises(DatasetNotFoundError, match="val"):
        ImageFolderDataModule(str(tmp_path / "e"))


@pytest.mark.parametrize("size", [0, -3])
def test_image_size_is_checked_in_the_constructor(tmp_path: Path, size: int) -> None:
    _pngs(tmp_path / "a", 2)
    _pngs(tmp_path / "b", 2)
    for build in (
        lambda: ImageFolderDataModule(str(tmp_path), image_size=size),
        lambda: SyntheticShapesDataModule(image_size=size),
        lambda: DigitsDataModule(image_size=size),
    ):
        with pytest.raises(ValueError, match=rf"^image_size must be a positive integer \(pixels\), got {size}$"):
            build()


def test_image_size_zero_on_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _pngs(tmp_path / "data" / "a", 2)
    _pngs(tmp_path / "data" / "b", 2)
    args = ["fit", "--model", "ClassificationTask", "--data", "ImageFolderDataModule",
            "--data.root", str(tmp_path / "data"), "--data.image_size", "0", "--trainer.accelerator", "cpu"]
    line = cli_error_line(capsys, args)
    assert "image_size" in line and "got 0" in line and ".png" not in line


def test_channels_is_checked(tmp_path: Path) -> None:
    _pngs(tmp_path / "a", 2)
    with pytest.raises(ValueError, match="channels must be 1 .* or 3 .*, got 2"):
        ImageFolderDataModule(str(tmp_path), channels=2)


def test_items_carry_index_and_path_and_collate(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "a", 2) + _pngs(tmp_path / "b", 2)
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, val_fraction=0.5, batch_size=4)
    batch = next(iter(dm.val_dataloader()))
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [0, 1]
    assert all(isinstance(p, str) for p in batch["path"]) and {Path(p) for p in batch["path"]} <= set(paths)
    assert batch["image"].shape == (2, 3, 8, 8) and batch["label"].shape == (2,)


def test_predict_root_is_checked_in_the_constructor(tmp_path: Path) -> None:
    _pngs(tmp_path / "data" / "a", 2)
    _pngs(tmp_path / "data" / "b", 2)
    with pytest.raises(DatasetNotFoundError, match=r"'.*missing' does not exist"):
        ImageFolderDataModule(str(tmp_path / "data"), predict_root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolderDataModule(str(tmp_path / "data"), predict_root=str(tmp_path / "empty"))
