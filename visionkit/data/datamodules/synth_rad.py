"""``SynthRadDataModule``: the generated modality__organ images of :mod:`visionkit.data.datasets.synth_rad`.

Train, val and test draw disjoint seed streams (as the other synthetic datamodules), and every split is
exactly balanced: ``<split>_per_class`` images of each class.
"""

from __future__ import annotations

from typing import Any

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datamodules.synthetic_shapes import SPLIT_SEED_OFFSET
from visionkit.data.datasets.base import InMemoryCache
from visionkit.data.datasets.synth_rad import TASKS, SynthRad
from visionkit.errors import check_choice

#: Training images per class of ``"pretrain"`` when ``train_per_class`` is not given.
DEFAULT_TRAIN_PER_CLASS = 150
#: Test images per class of each task when ``test_per_class`` is not given.
DEFAULT_TEST_PER_CLASS = {"pretrain": 50, "unseen": 100}


class SynthRadDataModule(VisionDataModule):
    """Synthetic CT/MR/US images of soft-edged organ shapes, label ``modality__organ``.

    ``task="pretrain"``: 12 classes (organs 0-5, 4 per modality), 150/50/50 images per class by default
    (1800/600/600). ``task="unseen"``: the 6 classes of organs 6-7 in all modalities, for few-shot
    fine-tuning and linear probes: ``shots`` training images per class, 50 val and 100 test per class.
    The class table is in :mod:`visionkit.data.datasets.synth_rad`.

    The label space is kept in ``label_space``; ``task`` stays the base's ``"multiclass"`` (the kind of label).

    Args:
        task: ``"pretrain"`` or ``"unseen"``.
        train_per_class: training images per class for ``"pretrain"`` (``None``: 150); ``"unseen"`` takes
            ``shots`` instead.
        val_per_class: validation images per class.
        test_per_class: test images per class (``None``: 50 for ``"pretrain"``, 100 for ``"unseen"``).
        shots: training images per class for ``"unseen"``.
        channels: 1 (grey) or 3 (grey repeated for RGB backbones).
        cache: keep the drawn items in memory (each split is drawn once, not every epoch; about 7 MB per
            1800 grey 32 px images).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.
    """

    default_batch_size = 64

    def __init__(
        self,
        task: str = "pretrain",
        train_per_class: int | None = None,
        val_per_class: int = 50,
        test_per_class: int | None = None,
        shots: int = 10,
        channels: int = 1,
        cache: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("task", task, list(TASKS))
        if task == "unseen" and train_per_class is not None:
            raise ValueError(
                f"train_per_class applies to task='pretrain'; task='unseen' trains on shots images per class, "
                f"got train_per_class={train_per_class}"
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        train = DEFAULT_TRAIN_PER_CLASS if train_per_class is None else train_per_class
        per_class = {
            "train": shots if task == "unseen" else train,
            "val": val_per_class,
            "test": DEFAULT_TEST_PER_CLASS[task] if test_per_class is None else test_per_class,
        }
        names = {"train": "shots" if task == "unseen" else "train_per_class", "val": "val_per_class",
                 "test": "test_per_class"}
        for split, count in per_class.items():
            if count < 1:
                raise ValueError(f"{names[split]} must be a positive integer (images per class), got {count}")
        self.label_space, self.in_channels, self.per_class, self.cache = task, channels, per_class, cache
        self.classes = self.dataset("val").classes  # builds it now: a bad image_size fails here, not at setup
        self.num_classes = len(self.classes)
        self.sizes = {split: count * self.num_classes for split, count in per_class.items()}

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (``"CT__disc"``, ...)."""
        return list(self.classes)

    def build_dataset(self, split: str) -> SynthRad | InMemoryCache:
        length = self.per_class[split] * len(TASKS[self.label_space])
        data = SynthRad(
            length, self.image_size, self.label_space, self.in_channels, self.seed + SPLIT_SEED_OFFSET[split]
        )
        return InMemoryCache(data) if self.cache else data
