"""``ImageFolder`` and ``UnlabelledImages``: missing/empty folders named, empty class folders warned,
no file skipped silently, broken images fail by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.files import write_image_folder
from tests.data.files import write_pngs as _pngs
from visionkit.data.datasets import ImageFolder, UnlabelledImages
from visionkit.data.errors import DatasetNotFoundError, ImageReadError


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist; expected layout"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolder(tmp_path / "empty")
    root = write_image_folder(tmp_path / "ok", per_class=1)
    (root / "a" / "00.png").write_bytes(b"garbage")
    data = ImageFolder(root, image_size=8)
    with pytest.raises(ImageReadError, match=r"unreadable image '.*00\.png'"):
        data[0]


def test_empty_class_folder_warns_and_keeps_indices(tmp_path: Path) -> None:
    _pngs(tmp_path / "a", 2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("no images here")
    _pngs(tmp_path / "c", 3)
    with pytest.warns(UserWarning, match=rf"'{tmp_path / 'b'}' holds no images.*stays class 1"):
        data = ImageFolder(tmp_path, image_size=8)
    assert data.classes == ["a", "b", "c"]
    assert sorted(int(label) for _, label in data.items) == [0, 0, 2, 2, 2]


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
