"""Datamodules of image-text (caption) data for retrieval: generated shapes, caption CSVs, Karpathy JSON.

Batches are the default collate of the items: ``image`` float ``(B, 3, H, W)``, ``caption`` a list of
``B`` str, ``image_id`` int64 ``(B,)``. Train batches are shuffled (seeded per epoch); val and test
keep the file order, so captions of one image stay together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visionkit.data.datamodules.base import SPLITS, VisionDataModule, split_sizes
from visionkit.data.datamodules.synthetic_shapes import SPLIT_SEED_OFFSET
from visionkit.data.datasets.base import InMemoryCache
from visionkit.data.datasets.captions import CaptionCSV, KarpathyCaptions
from visionkit.data.datasets.synthetic_captions import ATTRIBUTES, SyntheticCaptionedShapes


class CaptionDataModule(VisionDataModule):
    """Base of image-text datamodules: no classes, ``task = "retrieval"``.

    Args: see :class:`VisionDataModule`.
    """

    num_classes = 0
    task = "retrieval"


class SyntheticCaptionsDataModule(CaptionDataModule):
    """Generated captioned shapes (:class:`SyntheticCaptionedShapes`); the splits draw disjoint seed streams.

    Args:
        describe: attributes the captions state (subset of ``("colour", "shape", "position")``).
        templates: ``"plain"`` or ``"varied"`` caption templates.
        num_train, num_val, num_test: split sizes (images; one caption each).
        num_shapes, num_colours: how many shapes and colours to draw from (1 to 8).
        cache: keep the drawn items in memory (each split is drawn once, not every epoch).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 128

    def __init__(
        self,
        describe: Sequence[str] = ATTRIBUTES,
        templates: str = "plain",
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 500,
        num_shapes: int = 8,
        num_colours: int = 8,
        cache: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.describe, self.templates = describe, templates
        self.num_shapes, self.num_colours, self.cache = num_shapes, num_colours, cache
        self.sizes = split_sizes(num_train, num_val, num_test)
        self.dataset("val")  # validates the arguments now, not at setup time

    def build_dataset(self, split: str) -> SyntheticCaptionedShapes | InMemoryCache:
        data = SyntheticCaptionedShapes(
            self.sizes[split], self.image_size, self.seed + SPLIT_SEED_OFFSET[split], self.describe,
            self.num_shapes, self.num_colours, self.templates,
        )
        return InMemoryCache(data) if self.cache else data


class CaptionCSVDataModule(CaptionDataModule):
    """(image, caption) rows of one CSV file per split (:class:`CaptionCSV`).

    All given files are read and checked in ``__init__``. Without ``val_csv`` (``test_csv``) the split
    is unavailable: asking for its loader raises; disable validation with ``limit_val_batches=0``.

    Args:
        train_csv, val_csv, test_csv: the split files (``val_csv``, ``test_csv`` optional).
        image_root: folder relative image paths are resolved against (default: each CSV's folder).
        image_column, caption_column: header names of the image path and caption columns.
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 64
    default_image_size = 224

    def __init__(
        self,
        train_csv: str,
        val_csv: str | None = None,
        test_csv: str | None = None,
        image_root: str | None = None,
        image_column: str = "image",
        caption_column: str = "caption",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.files = {"train": train_csv, "val": val_csv, "test": test_csv}
        self.image_root, self.image_column, self.caption_column = image_root, image_column, caption_column
        for split in SPLITS:
            if self.files[split] is not None:
                self.dataset(split)  # reads and checks the file now, not at setup time

    def build_dataset(self, split: str) -> CaptionCSV:
        path = self.files[split]
        if path is None:
            raise ValueError(
                f"{type(self).__name__} has no {split} split: {split}_csv was not given "
                f"(pass {split}_csv, or set the trainer's limit_{split}_batches=0)"
            )
        return CaptionCSV(path, self.image_root, self.image_column, self.caption_column, self.image_size)

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, SPLITS):
            if self.files[split] is not None:
                self.dataset(split)


class KarpathyDataModule(CaptionDataModule):
    """The train (+ restval), val and test splits of a Karpathy-split JSON (:class:`KarpathyCaptions`).

    The val split is built in ``__init__`` (the file and the val images are checked then); train and
    test are built at setup.

    Args:
        annotations: the JSON file (e.g. ``dataset_coco.json``).
        image_root: folder holding the images (``<image_root>/<filepath>/<filename>``).
        include_restval: whether train includes the ``"restval"`` images.
        max_captions_per_image: keep at most this many captions per image (``None``: all).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 64
    default_image_size = 224

    def __init__(
        self,
        annotations: str,
        image_root: str,
        include_restval: bool = True,
        max_captions_per_image: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.annotations, self.image_root = annotations, image_root
        self.include_restval, self.max_captions_per_image = include_restval, max_captions_per_image
        self.dataset("val")  # checks the file and the val images now, not at setup time

    def build_dataset(self, split: str) -> KarpathyCaptions:
        return KarpathyCaptions(
            self.annotations, self.image_root, split, self.include_restval, self.image_size,
            self.max_captions_per_image,
        )
