"""ImageFolder: the common on-disk class-folder layout (``root/<class>/<image>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.errors import DatasetNotFoundError, ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LAYOUT = "<root>/<class_name>/<image>.{png,jpg,...} (or <root>/{train,val,test}/<class_name>/<image>)"


def scan_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names) and ``(path, class_index)`` for every image under ``root``.

    Raises:
        DatasetNotFoundError: ``root`` is missing, has no class folders, or holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError("ImageFolder", root, LAYOUT)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError("ImageFolder", root, LAYOUT, "has no class sub-folders")
    items = [
        (p, c)
        for c, name in enumerate(classes)
        for p in sorted((root / name).rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    if not items:
        raise DatasetNotFoundError("ImageFolder", root, LAYOUT, f"holds no images with extensions {IMAGE_EXTENSIONS}")
    return classes, items


def read_image(path: str | Path, image_size: int | None = None, channels: int = 3) -> torch.Tensor:
    """Decode an image file to float32 ``(channels, H, W)`` in [0, 1], squashed to ``image_size`` if given.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            if image_size is not None:
                img = img.resize((image_size, image_size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except Exception as err:  # noqa: BLE001 - PIL raises many types; all mean "unreadable"
        raise ImageReadError(path, err) from err
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class ImageFolder(VisionDataset):
    """Images in class folders.

    Args:
        root: folder with one sub-folder per class.
        image_size: images are resized (squashed) to ``image_size`` x ``image_size``.
        channels: 3 (RGB) or 1 (grey).
        indices: subset of the scanned files (``None``: all).
        classes: the class list to use (e.g. the train split's), so splits agree on label indices.

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
        if classes is not None and found != classes:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise DatasetNotFoundError(
                    "ImageFolder", root, LAYOUT, f"has class folders {unknown} that the train split lacks"
                )
            items = [(p, classes.index(found[c])) for p, c in items]
        self.classes = classes or found
        self.items = items if indices is None else [items[i] for i in indices]
        self.image_size, self.in_channels, self.root = image_size, channels, Path(root)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.items[index]
        return {"image": read_image(path, self.image_size, self.in_channels), "label": torch.tensor(label)}
