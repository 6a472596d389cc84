"""``ImageFolderDataModule``: real images in class folders on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.data.datamodules.base import VisionDataModule, holdout_split
from visionkit.data.datasets.image_folder import LAYOUT, ImageFolder, UnlabelledImages, scan_image_folder
from visionkit.data.errors import DatasetNotFoundError


class ImageFolderDataModule(VisionDataModule):
    """Images under ``root/<class>/`` or ``root/{train,val,test}/<class>/``.

    With split folders, ``train`` and ``val`` must both exist (a missing ``test`` falls back to ``val``);
    otherwise the files are split by a seeded permutation into ``val_fraction``/``test_fraction``.
    The folders are scanned in ``__init__``, so a wrong ``root`` or ``predict_root`` fails at once with
    :class:`~visionkit.data.errors.DatasetNotFoundError`. Files with other extensions than
    :data:`~visionkit.data.datasets.image_folder.IMAGE_EXTENSIONS` and hidden files are ignored; a class
    folder without images is kept (label indices stay stable) with a warning.

    ``predict`` runs on the images under ``predict_root`` when it is given (scanned recursively, any
    layout, no labels needed), and on the ``test`` split otherwise.

    Args:
        root: dataset folder.
        val_fraction, test_fraction: held-out shares when there are no split folders.
        channels: 3 (RGB) or 1 (grey).
        predict_root: folder of unlabelled images to predict (``None``: the test split).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_image_size = 224

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        channels: int = 3,
        predict_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
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
            what = f"ImageFolder root '{self.root}' holds {len(items)} images"
            self.split_indices = holdout_split(len(items), val_fraction, test_fraction, self.seed, what)
        self.num_classes = len(self.classes)
        self.predict_root = None if predict_root is None else Path(predict_root)
        self.predict_images = None
        if self.predict_root is not None:
            self.predict_images = UnlabelledImages(self.predict_root, self.image_size, channels, classes=self.classes)

    def predict_dataset(self) -> UnlabelledImages | ImageFolder:
        """The images under ``predict_root`` when it was given, else the ``test`` split."""
        if self.predict_images is None:
            return self.dataset("test")
        return self.predict_images

    def build_dataset(self, split: str) -> ImageFolder:
        if self.split_indices is None:
            return ImageFolder(self.split_roots[split], self.image_size, self.in_channels, classes=self.classes)
        return ImageFolder(self.root, self.image_size, self.in_channels, self.split_indices[split], self.classes)
