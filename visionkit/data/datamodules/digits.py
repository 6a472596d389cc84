"""``DigitsDataModule``: scikit-learn's digits, split by a seeded permutation."""

from __future__ import annotations

from typing import Any

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datasets.digits import Digits, split_digit_indices


class DigitsDataModule(VisionDataModule):
    """10-class handwritten digits, upsampled from 8x8.

    Args:
        num_train, num_val, num_test: split sizes (at most 1797 together).
        channels: 1 (grey) or 3 (grey repeated for RGB backbones).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 64

    def __init__(
        self,
        num_train: int = 1200,
        num_val: int = 300,
        num_test: int = 297,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.num_classes, self.in_channels = 10, channels
        self.split_indices = split_digit_indices(self.seed, {"train": num_train, "val": num_val, "test": num_test})

    def build_dataset(self, split: str) -> Digits:
        return Digits(self.split_indices[split], self.image_size, self.in_channels)
