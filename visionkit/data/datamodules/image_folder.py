"""``ImageFolderDataModule``: real images in class folders on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datasets.image_folder import LAYOUT, ImageFolder, scan_image_folder
from visionkit.data.errors import DatasetNotFoundError


class ImageFolderDataModule(VisionDataModule):
    """Images under ``root/<class>/`` or ``root/{train,val,test}/<class>/``.

    With split folders, ``train`` and ``val`` must both exist (a missing ``test`` falls back to ``val``);
    otherwise the files are split by a seeded permutation into ``val_fraction``/``test_fraction``.
    The folder is scanned in ``__init__``, so a wrong root fails at once with
    :class:`~visionkit.data.errors.DatasetNotFoundError`.

    Args:
        root: dataset folder.
        val_fraction, test_fraction: held-out shares when there are no split folders.
        channels: 3 (RGB) or 1 (grey).
        batch_size, num_workers, image_size, seed: see :class:`VisionDataModule`.
    """

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        channels: int = 3,
        batch_size: int = 32,
        num_workers: int = 0,
        image_size: int = 224,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, image_size, seed)
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
        self.root, self.in_channels = Path(root), channels
        self.split_roots = {s: self.root / s for s in ("train", "val", "test") if (self.root / s).is_dir()}
        if "train" in self.split_roots:
            self.classes, _ = scan_image_folder(self.split_roots["train"])
            if "val" not in self.split_roots:
                raise DatasetNotFoundError("ImageFolder", self.root / "val", LAYOUT, "does not exist (train/ does)")
            scan_image_folder(self.split_roots["val"])
            self.split_roots.setdefault("test", self.split_roots["val"])
            self.split_indices = None
        else:
            self.classes, items = scan_image_folder(self.root)
            order = np.random.default_rng(seed).permutation(len(items))
            n_val, n_test = round(val_fraction * len(items)), round(test_fraction * len(items))
            self.split_indices = {
                "val": order[:n_val],
                "test": order[n_val : n_val + n_test] if n_test else order[:n_val],
                "train": order[n_val + n_test :],
            }
        self.num_classes = len(self.classes)

    def build_dataset(self, split: str) -> ImageFolder:
        if self.split_indices is None:
            return ImageFolder(self.split_roots[split], self.image_size, self.in_channels, classes=self.classes)
        return ImageFolder(self.root, self.image_size, self.in_channels, self.split_indices[split], self.classes)
