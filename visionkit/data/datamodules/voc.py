"""``VOCSegmentationDataModule``: PASCAL VOC 2012 segmentation from a local folder."""

from __future__ import annotations

from typing import Any, ClassVar

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datasets.voc import VOC_CLASSES, VOC_FOREGROUND, VOC_IGNORE_INDEX, VOCSegmentation


class VOCSegmentationDataModule(VisionDataModule):
    """PASCAL VOC 2012 (or any folder in its layout) for weakly- and fully-supervised segmentation.

    Batches hold ``image`` ``(B, 3, S, S)``, ``mask`` int64 ``(B, S, S)`` (0 background, 1-20, 255 ignore),
    ``label`` float32 multi-hot ``(B, 20)`` derived from the masks, ``index``, ``path`` and ``orig_size``
    (see :class:`~visionkit.data.datasets.VOCSegmentation`). Images and masks are squashed to
    ``image_size`` (default 320; the ToCo reference validates at 448); training items get one random resized
    crop and flip shared by image and mask (``augment``), redrawn every epoch from ``(seed, index, epoch)``.

    As for :class:`~visionkit.data.datamodules.SyntheticMultiShapesDataModule`, ``num_classes`` is the
    width of the image label (20 foreground classes, ``task = "multilabel"``); masks have
    ``num_mask_classes = num_classes + 1 = 21`` classes (``mask_classes``, background first) and
    ``ignore_index = 255``. The split files and every listed image and mask file are checked in
    ``__init__``, so a wrong ``root``, ``masks`` or split fails at once in one line; mask contents are
    checked when an item is read. ``predict`` runs on the test split.

    Args:
        root: the VOC2012 folder (or a folder holding ``VOC2012/`` or ``VOCdevkit/VOC2012/``).
        masks: ``"SegmentationClass"`` (1,464 train masks) or ``"SegmentationClassAug"`` (with the
            ``train_aug`` list: 10,582).
        train_split, val_split: split file names under ``ImageSets/Segmentation/`` (or paths to ``.txt`` files).
        test_split: the test split; ``None``: ``val_split`` (VOC's test masks are not public).
        augment: random resized crop + horizontal flip of the training items.
        crop_scale: area range of the training crops, as a fraction of the image.
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 16
    default_image_size = 320
    task = "multilabel"
    tag_epochs: ClassVar[bool] = True
    mask_classes = list(VOC_CLASSES)
    ignore_index = VOC_IGNORE_INDEX

    def __init__(
        self,
        root: str,
        masks: str = "SegmentationClass",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.masks, self.augment, self.crop_scale = root, masks, augment, tuple(crop_scale)
        self.split_names = {"train": train_split, "val": val_split, "test": val_split if test_split is None else test_split}
        self.classes = list(VOC_FOREGROUND)
        self.num_classes = len(self.classes)
        for split in ("train", "val", "test"):  # checks the folders and file lists now, not at setup time
            self.dataset(split)

    @property
    def num_mask_classes(self) -> int:
        """Classes of the masks, background included (21)."""
        return len(self.mask_classes)

    def build_dataset(self, split: str) -> VOCSegmentation:
        return VOCSegmentation(
            self.root, self.split_names[split], self.masks, self.image_size,
            augment=self.augment and split == "train", crop_scale=self.crop_scale, seed=self.seed,
        )
