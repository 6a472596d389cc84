"""MedMNIST: 2D MedMNIST files (v2 / v3, MedMNIST+) read from a local folder with NumPy only.

The ``medmnist`` package is never imported: its classes assert that a file holds the official number of
samples (tiny test files fail) and create ``~/.medmnist``. Nothing is downloaded.

A file is ``{root}/{flag}.npz`` (28 px) or ``{root}/{flag}_{size}.npz`` (MedMNIST+: 64, 128, 224 px)
with the keys ``{split}_images`` and ``{split}_labels`` for ``split`` in train, val, test:

* images uint8, 2D grey ``(N, H, W)`` or 2D RGB ``(N, H, W, 3)``; 3D volumes ``(N, D, H, W)`` (the
  ``*mnist3d`` flags) are refused;
* labels ``(N, 1)`` (or ``(N,)``) integer class indices, or ``(N, L)`` 0/1 multi-label columns
  (ChestMNIST, ``L = 14``), read with ``multi_label=True``.

Bad files raise :class:`MedMNISTFileError` and a missing file
:class:`~visionkit.data.errors.DatasetNotFoundError`, in one line naming the file and what was expected.
Only the arrays' headers are read to check a file; a dataset loads the pixels of its own split.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.errors import DatasetNotFoundError, FileContentError
from visionkit.errors import check_choice

#: The splits of a MedMNIST file, in order.
MEDMNIST_SPLITS = ("train", "val", "test")
#: The expected file names and keys, in one line.
LAYOUT = (
    "<root>/<flag>.npz (28 px) or <root>/<flag>_<size>.npz holding uint8 train_images, val_images, test_images "
    "(N, H, W) or (N, H, W, 3) and integer train_labels, val_labels, test_labels (N, 1) or (N, L)"
)
#: ITU-R BT.601 luma weights for RGB to grey.
LUMA = (0.299, 0.587, 0.114)


class MedMNISTFileError(FileContentError):
    """A MedMNIST ``.npz`` file with a missing key or arrays of the wrong kind, in one line."""

    kind = "MedMNIST file"


@dataclass(frozen=True)
class MedMNISTInfo:
    """What :func:`inspect_medmnist` found in a file.

    Attributes:
        path: the file.
        side: image height and width in pixels.
        channels: 1 (grey) or 3 (RGB).
        num_labels: classes (largest class index + 1 over the three splits), or label columns when multi-label.
        counts: images per split.
    """

    path: Path
    side: int
    channels: int
    num_labels: int
    counts: dict[str, int]


def medmnist_file(root: str | Path, flag: str, size: int | None = None) -> Path:
    """The file of ``flag`` under ``root``: ``{flag}.npz`` when ``size`` is ``None``, else ``{flag}_{size}.npz``
    (or ``{flag}.npz`` for ``size=28``, the name of the 28 px files).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder or holds none of those names (naming the paths tried).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError("MedMNIST", root, LAYOUT, "is not a folder" if root.exists() else "does not exist")
    names = [f"{flag}.npz"] if size is None else [f"{flag}_{size}.npz"] + ([f"{flag}.npz"] if size == 28 else [])
    for name in names:
        if (root / name).is_file():
            return root / name
    tried = " or ".join(f"'{root / name}'" for name in names)
    raise DatasetNotFoundError("MedMNIST", root, LAYOUT, f"has no file {tried} (flag='{flag}', size={size})")


def _header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the array ``key`` of an ``.npz`` archive, from its header (the data is not read)."""
    with archive.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return tuple(shape), np.dtype(dtype)


def _check_images(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, int, int]:
    """``(N, side, channels)`` of an images array, or a :class:`MedMNISTFileError` saying what is wrong."""
    if (len(shape) == 4 and shape[-1] != 3) or len(shape) == 5:
        raise MedMNISTFileError(
            path, f"'{key}' holds 3D volumes of shape {shape} (N, D, H, W); only 2D files are supported: "
            f"grey (N, H, W) or RGB (N, H, W, 3)"
        )
    if len(shape) not in (3, 4):
        raise MedMNISTFileError(path, f"'{key}' has shape {shape}; expected grey (N, H, W) or RGB (N, H, W, 3)")
    if dtype != np.uint8:
        raise MedMNISTFileError(path, f"'{key}' has dtype {dtype}; expected uint8 pixels")
    if shape[0] == 0:
        raise MedMNISTFileError(path, f"'{key}' holds no images; expected at least one")
    if shape[1] != shape[2]:
        raise MedMNISTFileError(path, f"'{key}' holds {shape[1]}x{shape[2]} images; expected square ones")
    return shape[0], shape[1], 1 if len(shape) == 3 else 3


def _check_labels(path: Path, key: str, labels: np.ndarray, count: int, multi_label: bool) -> int:
    """Largest class index + 1 (or the number of label columns when ``multi_label``) of a labels array."""
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != count:
        raise MedMNISTFileError(
            path, f"'{key}' has shape {labels.shape}; expected ({count}, 1) class indices or ({count}, L) "
            f"multi-label columns, one row per image"
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise MedMNISTFileError(path, f"'{key}' has dtype {labels.dtype}; expected integer labels")
    if multi_label:
        if labels.shape[1] < 2:
            raise MedMNISTFileError(
                path, f"'{key}' holds single-label class indices {labels.shape}, but multi_label=True expects "
                f"(N, L) 0/1 columns with L > 1 (ChestMNIST); pass multi_label=False"
            )
        if not np.isin(labels, (0, 1)).all():
            raise MedMNISTFileError(path, f"'{key}' holds values other than 0 and 1; expected multi-label 0/1 columns")
        return labels.shape[1]
    if labels.shape[1] > 1:
        raise MedMNISTFileError(
            path, f"'{key}' holds multi-label labels of shape {labels.shape} (ChestMNIST-style), but this is a "
            f"single-label dataset (multi_label=False) that expects (N, 1) class indices; pass multi_label=True"
        )
    if labels.size and labels.min() < 0:
        raise MedMNISTFileError(path, f"'{key}' holds the negative class index {labels.min()}; expected indices >= 0")
    return int(labels.max()) + 1 if labels.size else 0


def inspect_medmnist(path: str | Path, multi_label: bool = False) -> MedMNISTInfo:
    """Check the keys, shapes and dtypes of every split of a MedMNIST file, reading only the labels' data.

    Raises:
        MedMNISTFileError: not a readable ``.npz``, a missing key, 3D volumes, non-uint8 pixels, splits of
            different image shapes, labels that do not match the images or ``multi_label`` (one line each).
    """
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise MedMNISTFileError(path, f"cannot be read as a NumPy .npz archive ({err})") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise MedMNISTFileError(path, "holds a single array; expected a .npz archive with " + LAYOUT.split(" holding ")[1])
    with npz:
        found = sorted(npz.files)
        counts, geometry, num_labels = {}, set(), 0
        for split in MEDMNIST_SPLITS:
            for kind in ("images", "labels"):
                if f"{split}_{kind}" not in found:
                    raise MedMNISTFileError(
                        path, f"has no key '{split}_{kind}' (it holds {found}); expected train_images, "
                        f"train_labels, val_images, val_labels, test_images, test_labels"
                    )
            key = f"{split}_images"
            count, side, channels = _check_images(path, key, *_header(npz.zip, key))
            counts[split] = count
            geometry.add((side, channels))
            num_labels = max(num_labels, _check_labels(path, f"{split}_labels", npz[f"{split}_labels"], count, multi_label))
    if len(geometry) > 1:
        raise MedMNISTFileError(
            path, f"its splits hold images of different sizes/channels {sorted(geometry)} (side, channels); "
            f"expected one image shape for train, val and test"
        )
    side, channels = geometry.pop()
    return MedMNISTInfo(path, side, channels, num_labels, counts)


def class_names_for(info: MedMNISTInfo, classes: list[str] | None, multi_label: bool = False) -> list[str]:
    """``classes`` checked against the file's classes (or label columns), or ``"0"``, ``"1"``, ... when ``None``.

    Raises:
        ValueError: fewer names than the file has classes (or, multi-label, not one name per column).
    """
    if classes is None:
        return [str(c) for c in range(info.num_labels)]
    if multi_label and len(classes) != info.num_labels:
        raise ValueError(
            f"classes has {len(classes)} names, but '{info.path}' holds {info.num_labels} label columns; "
            f"expected one name per column"
        )
    if len(classes) < info.num_labels:
        raise ValueError(
            f"classes has {len(classes)} names, but '{info.path}' holds {info.num_labels} classes; "
            f"expected at least {info.num_labels} names"
        )
    return [str(c) for c in classes]


class MedMNIST(VisionDataset):
    """One split of a 2D MedMNIST file (see the module docstring for the file layout).

    Args:
        root: folder holding the ``.npz`` files.
        flag: dataset name, e.g. ``"pathmnist"``, ``"organamnist"``, ``"chestmnist"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: image size of the file to read (``None``: ``{flag}.npz``; 64, 128, 224: ``{flag}_{size}.npz``).
        image_size: output side in pixels (``None``: the file's; otherwise bilinear, antialiased resizing).
        channels: ``None`` (the file's: 1 grey, 3 RGB), 1 (RGB converted to luma) or 3 (grey repeated).
        multi_label: the labels are ``(N, L)`` 0/1 columns (ChestMNIST); ``label`` is then multi-hot.
        classes: class (or label column) names (``None``: ``"0"``, ``"1"``, ...); at least as many as the
            file's classes.

    Items: ``image`` float32 ``(channels, H, W)`` in [0, 1]; ``label`` int64 class index, or float32
    multi-hot ``(L,)`` when ``multi_label``; ``index`` int64 (position in the split).
    """

    def __init__(
        self,
        root: str | Path,
        flag: str,
        split: str = "train",
        size: int | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        multi_label: bool = False,
        classes: list[str] | None = None,
    ) -> None:
        check_choice("split", split, MEDMNIST_SPLITS)
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None (the file's), 1 or 3, got {channels}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive integer (pixels) or None, got {image_size}")
        self.path = medmnist_file(root, flag, size)
        self.info = inspect_medmnist(self.path, multi_label)
        self.classes = class_names_for(self.info, classes, multi_label)
        self.flag, self.split, self.multi_label = flag, split, multi_label
        self.image_size = self.info.side if image_size is None else image_size
        self.in_channels = self.info.channels if channels is None else channels
        with np.load(self.path, allow_pickle=False) as npz:
            self.images = npz[f"{split}_images"]
            labels = npz[f"{split}_labels"]
        self.labels = labels.reshape(len(labels), -1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(self.images[index]).float().div_(255)
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        if self.in_channels == 1 and image.shape[0] == 3:
            image = (image * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)
        elif self.in_channels == 3 and image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if self.image_size != image.shape[-1]:
            image = F.interpolate(
                image[None], size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                antialias=True,
            )[0].clamp_(0, 1)
        if self.multi_label:
            label = torch.from_numpy(self.labels[index].astype(np.float32))
        else:
            label = torch.tensor(int(self.labels[index, 0]), dtype=torch.int64)
        return {"image": image.contiguous(), "label": label, "index": torch.tensor(index, dtype=torch.int64)}
