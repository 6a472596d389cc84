"""ImageFolder checks: image_size up front, empty class folders warned, no file skipped silently, predict_root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import cli_error_line
from visionkit.data.datamodules import DigitsDataModule, ImageFolderDataModule, SyntheticShapesDataModule
from visionkit.data.datasets import ImageFolder, UnlabelledImages
from visionkit.data.errors import DatasetNotFoundError, ImageReadError


def _pngs(folder: Path, count: int, size: int = 12) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((size, size, 3), 20 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


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


def test_empty_class_folder_warns_and_keeps_indices(tmp_path: Path) -> None:
    _pngs(tmp_path / "a", 2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("no images here")
    _pngs(tmp_path / "c", 3)
    with pytest.warns(UserWarning, match=rf"'{tmp_path / 'b'}' holds no images.*stays class 1"):
        data = ImageFolder(tmp_path, image_size=8)
    assert data.classes == ["a", "b", "c"]
    assert sorted(int(label) for _, label in data.items) == [0, 0, 2, 2, 2]


def test_items_carry_index_and_path_and_collate(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "a", 2) + _pngs(tmp_path / "b", 2)
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, val_fraction=0.5, batch_size=4)
    batch = next(iter(dm.val_dataloader()))
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [0, 1]
    assert all(isinstance(p, str) for p in batch["path"]) and {Path(p) for p in batch["path"]} <= set(paths)
    assert batch["image"].shape == (2, 3, 8, 8) and batch["label"].shape == (2,)


def test_other_extensions_are_ignored_but_a_broken_image_raises(tmp_path: Path) -> None:
    _pngs(tmp_path / "a", 1)
    _pngs(tmp_path / "b", 1)
    (tmp_path / "a" / "readme.txt").write_text("ignored: not an image extension")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    data = ImageFolder(tmp_path, image_size=8)
    names = [p.name for p, _ in data.items]
    assert "readme.txt" not in names and "broken.jpg" in names
    broken = names.index("broken.jpg")
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        data[broken]


def test_unlabelled_images_scan_recursively(tmp_path: Path) -> None:
    files = _pngs(tmp_path / "new", 2) + _pngs(tmp_path / "new" / "deeper" / "more", 1)
    np.save(tmp_path / "new" / "deeper" / "array.npy", np.zeros((5, 5), np.uint8))
    (tmp_path / "new" / "list.csv").write_text("ignored")
    data = UnlabelledImages(tmp_path / "new", image_size=8, classes=["x", "y"])
    assert len(data) == 4 and set(data.paths) == {*files, tmp_path / "new" / "deeper" / "array.npy"}
    item = data[0]
    assert set(item) == {"image", "index", "path"} and item["image"].shape == (3, 8, 8)
    assert item["index"].dtype == torch.int64


def test_predict_root_is_checked_in_the_constructor(tmp_path: Path) -> None:
    _pngs(tmp_path / "data" / "a", 2)
    _pngs(tmp_path / "data" / "b", 2)
    with pytest.raises(DatasetNotFoundError, match=r"'.*missing' does not exist"):
        ImageFolderDataModule(str(tmp_path / "data"), predict_root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolderDataModule(str(tmp_path / "data"), predict_root=str(tmp_path / "empty"))
