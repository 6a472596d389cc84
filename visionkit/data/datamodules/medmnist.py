"""``MedMNISTDataModule``: the train/val/test splits of a local 2D MedMNIST ``.npz`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datasets.medmnist import MedMNIST, class_names_for, inspect_medmnist, medmnist_file


class MedMNISTDataModule(VisionDataModule):
    """A 2D MedMNIST file's own train, val and test splits, read with NumPy (the ``medmnist`` package is
    never imported; see :mod:`visionkit.data.datasets.medmnist` for the file layout).

    The file is found and checked in ``__init__`` (keys, shapes, dtypes and labels of every split, without
    reading the pixels), so a wrong ``root``, ``flag`` or ``size`` fails at once in one line.

    Args:
        root: folder holding ``{flag}.npz`` or ``{flag}_{size}.npz``.
        flag: dataset name, e.g. ``"organamnist"``, ``"breastmnist"``, ``"pathmnist"``, ``"chestmnist"``.
        size: image size of the file (``None``: ``{flag}.npz``, the 28 px files).
        channels: ``None`` (the file's: 1 grey, 3 RGB), 1 or 3.
        multi_label: ``(N, L)`` 0/1 label columns (ChestMNIST); ``task`` is then ``"multilabel"``.
        classes: class (or label column) names (``None``: ``"0"``, ``"1"``, ...).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size`` (``None``: the file's), ``seed`` of
            :class:`VisionDataModule`.
    """

    def __init__(
        self,
        root: str,
        flag: str,
        size: int | None = None,
        channels: int | None = None,
        multi_label: bool = False,
        classes: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None (the file's), 1 or 3, got {channels}")
        info = inspect_medmnist(medmnist_file(root, flag, size), multi_label)
        if kwargs.get("image_size") is None:
            kwargs["image_size"] = info.side
        super().__init__(**kwargs)
        self.root, self.flag, self.size, self.multi_label, self.info = Path(root), flag, size, multi_label, info
        self.task = "multilabel" if multi_label else "multiclass"
        self.in_channels = info.channels if channels is None else channels
        self.classes = class_names_for(info, classes, multi_label)
        self.num_classes = len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Class (or label column) names in label order."""
        return list(self.classes)

    def build_dataset(self, split: str) -> MedMNIST:
        return MedMNIST(
            self.root, self.flag, split, self.size, self.image_size, self.in_channels, self.multi_label, self.classes
        )
