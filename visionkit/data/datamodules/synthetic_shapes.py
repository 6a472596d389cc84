"""Datamodules for the generated shapes datasets (train, val and test draw disjoint seed streams)."""

from __future__ import annotations

from typing import Any, Literal

from visionkit.data.datamodules.base import VisionDataModule, split_sizes
from visionkit.data.datasets.synthetic_shapes import SyntheticMultiShapes, SyntheticShapes

#: Offsets that keep the splits' per-index random streams apart.
SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}


class SyntheticShapesDataModule(VisionDataModule):
    """One coloured shape per image; label = shape class, ``mask`` = the object's pixels.

    Args:
        num_classes: number of shape classes (2 to 8).
        num_train, num_val, num_test: split sizes.
        min_scale, max_scale: object half-size as a fraction of the image side.
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 64

    def __init__(
        self,
        num_classes: int = 4,
        num_train: int = 2000,
        num_val: int = 500,
        num_test: int = 500,
        min_scale: float = 0.2,
        max_scale: float = 0.38,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.sizes = split_sizes(num_train, num_val, num_test)
        self.min_scale, self.max_scale = min_scale, max_scale
        self.build_dataset("val")  # validates the arguments now, not at setup time

    def build_dataset(self, split: str) -> SyntheticShapes:
        return SyntheticShapes(
            self.sizes[split], self.image_size, self.num_classes, self.seed + SPLIT_SEED_OFFSET[split],
            self.min_scale, self.max_scale,
        )


class SyntheticMultiShapesDataModule(SyntheticShapesDataModule):
    """Several shapes per image: multi-hot ``label`` and a per-pixel class ``mask`` (0 = background).

    Args:
        min_scale, max_scale: object half-size as a fraction of the image side (smaller shapes than
            :class:`SyntheticShapesDataModule`'s, so several fit).
        max_objects: at most this many shapes (of distinct classes) per image.
        class_colours: paint each class in its own tint instead of a random colour.
        background: ``"texture"`` (default) or ``"gratings"`` (see :class:`~visionkit.data.datasets.SyntheticMultiShapes`).
        **kwargs: split sizes and classes of :class:`SyntheticShapesDataModule`, loader arguments of
            :class:`VisionDataModule`.
    """

    default_batch_size = 32
    default_image_size = 64
    task = "multilabel"

    def __init__(
        self, min_scale: float = 0.12, max_scale: float = 0.22, max_objects: int = 3, class_colours: bool = False,
        background: Literal["texture", "gratings"] = "texture", **kwargs: Any,
    ) -> None:
        self.max_objects, self.class_colours, self.background = max_objects, class_colours, background
        super().__init__(min_scale=min_scale, max_scale=max_scale, **kwargs)

    def build_dataset(self, split: str) -> SyntheticMultiShapes:
        return SyntheticMultiShapes(
            self.sizes[split], self.image_size, self.num_classes, self.seed + SPLIT_SEED_OFFSET[split],
            self.min_scale, self.max_scale, self.max_objects, self.class_colours, self.background,
        )
