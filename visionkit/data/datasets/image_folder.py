"""ImageFolder: the common on-disk class-folder layout (``root/<class>/<image>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.datasets.class_folders import align_classes, scan_class_folders
from visionkit.data.datasets.decode import read_image
from visionkit.data.errors import DatasetNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "LAYOUT", "ImageFolder", "UnlabelledImages", "list_images", "read_image", "scan_image_folder"]

#: File extensions read as images (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npy")
LAYOUT = "<root>/<class_name>/<image>.{png,jpg,...} (or <root>/{train,val,test}/<class_name>/<image>)"
UNLABELLED_LAYOUT = f"a folder of images (any sub-folders) with extensions {IMAGE_EXTENSIONS}"


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted).

    Files whose extension is not in :data:`IMAGE_EXTENSIONS` (``.txt``, ``.csv``, ``Thumbs.db``, ...)
    and hidden files or folders (names starting with ``.``, e.g. ``._x.png`` from macOS) are ignored;
    every other file is an image, and one that fails to decode raises when it is read.
    """
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def scan_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names) and ``(path, class_index)`` for every image under ``root``.

    Each class folder is scanned recursively with :func:`list_images` (files with other extensions
    and hidden files are ignored). A class folder without images stays in the class list, so that
    label indices do not depend on which folders hold files, and a warning names it.

    Raises:
        DatasetNotFoundError: ``root`` is missing, has no class folders, or holds no images.
    """
    what = f"images (extensions {IMAGE_EXTENSIONS})"
    return scan_class_folders(root, "ImageFolder", LAYOUT, list_images, what)


class ImageFolder(VisionDataset):
    """Images in class folders.

    Args:
        root: folder with one sub-folder per class.
        image_size: images are resized (squashed) to ``image_size`` x ``image_size``.
        channels: 3 (RGB) or 1 (grey).
        indices: subset of the scanned files (``None``: all).
        classes: the class list to use (e.g. the train split's), so splits agree on label indices.

    Items: ``image`` float32 ``(channels, H, W)`` in [0, 1], ``label`` int64, ``index`` int64 (position
    in this dataset) and ``path`` str. Files are listed by :func:`scan_image_folder`.

    Raises:
        DatasetNotFoundError: missing or empty root.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        channels: int = 3,
        indices: list[int] | np.ndarray | None = None,
        classes: list[str] | None = None,
    ) -> None:
        found, items = scan_image_folder(root)
        self.classes, items = align_classes(found, items, classes, "ImageFolder", root, LAYOUT)
        self.items = items if indices is None else [items[i] for i in indices]
        self.image_size, self.in_channels, self.root = image_size, channels, Path(root)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.items[index]
        return {
            "image": read_image(path, self.image_size, self.in_channels),
            "label": torch.tensor(label),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(path),
        }


class UnlabelledImages(VisionDataset):
    """Every image under a folder (recursive, any layout, no class folders), for prediction.

    Files are listed with :func:`list_images` (other extensions and hidden files are ignored).
    Items: ``image`` float32 ``(channels, H, W)`` in [0, 1], ``index`` int64 scalar, ``path`` str; no label.

    Args:
        root: folder of images.
        image_size: images are resized (squashed) to ``image_size`` x ``image_size``.
        channels: 3 (RGB) or 1 (grey).
        classes: class names of the model that will label them (for plots), if known.

    Raises:
        DatasetNotFoundError: ``root`` is not a folder or holds no images.
    """

    def __init__(
        self, root: str | Path, image_size: int = 224, channels: int = 3, classes: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            reason = "is not a folder" if self.root.exists() else "does not exist"
            raise DatasetNotFoundError("UnlabelledImages", self.root, UNLABELLED_LAYOUT, reason)
        self.paths = list_images(self.root)
        if not self.paths:
            raise DatasetNotFoundError("UnlabelledImages", self.root, UNLABELLED_LAYOUT, "holds no images")
        self.classes = list(classes or [])
        self.image_size, self.in_channels = image_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        return {
            "image": read_image(path, self.image_size, self.in_channels),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(path),
        }
