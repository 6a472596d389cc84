"""``VisionDataModule``: explicit arguments, seeded splits and epoch-seeded shuffling."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.samplers import EpochSeededSampler, EpochTaggedDistributedSampler, EpochTaggedSampler

SPLITS = ("train", "val", "test")


def split_sizes(num_train: int, num_val: int, num_test: int) -> dict[str, int]:
    """``{"train": num_train, "val": num_val, "test": num_test}``, each checked to be a positive integer."""
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for split, value in sizes.items():
        if value < 1:
            raise ValueError(f"num_{split} must be a positive integer, got {value}")
    return sizes


def holdout_split(count: int, val_fraction: float, test_fraction: float, seed: int, what: str) -> dict[str, np.ndarray]:
    """Indices ``{"train", "val", "test"}`` of ``count`` items split by a permutation seeded with ``seed``:
    ``val_fraction`` and ``test_fraction`` of them held out (rounded); an empty test share is the val share.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more, or too few items to keep any for training
            (``what`` names them, e.g. ``"ImageFolder root 'x' holds 3 images"``).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    n_val, n_test = round(val_fraction * count), round(test_fraction * count)
    if n_val + n_test >= count:
        raise ValueError(
            f"{what}: too few to hold out val_fraction={val_fraction} + test_fraction={test_fraction} and keep some for training"
        )
    return {
        "train": order[n_val + n_test :],
        "val": order[:n_val],
        "test": order[n_val : n_val + n_test] if n_test else order[:n_val],
    }


class VisionDataModule(pl.LightningDataModule, ABC):
    """Base datamodule. Subclasses declare only their own arguments plus ``**kwargs`` (passed on to
    this constructor), set ``num_classes`` and ``in_channels`` in ``__init__`` (the CLI links them
    and ``image_size`` into the task before ``setup`` runs) and implement :meth:`build_dataset`.

    Args:
        batch_size: samples per batch (per device); ``None``: the datamodule's ``default_batch_size``.
        num_workers: DataLoader worker processes.
        image_size: image side in pixels; ``None``: the datamodule's ``default_image_size``.
        seed: seed of the split and of the per-epoch shuffle order.
    """

    num_classes: int
    in_channels: int = 3
    #: ``"multiclass"`` (one label per image) or ``"multilabel"`` (multi-hot labels).
    task: str = "multiclass"
    #: ``batch_size`` and ``image_size`` when they are not given.
    default_batch_size: ClassVar[int] = 32
    default_image_size: ClassVar[int] = 32
    #: batching function of the loaders (``None``: torch's default collate).
    collate_fn: ClassVar[Any] = None
    #: training indices reach the dataset as ``(index, epoch)`` (:class:`~visionkit.data.samplers.EpochTaggedSampler`).
    tag_epochs: ClassVar[bool] = False

    def __init__(
        self, batch_size: int | None = None, num_workers: int = 0, image_size: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        batch_size = self.default_batch_size if batch_size is None else batch_size
        image_size = self.default_image_size if image_size is None else image_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer (pixels), got {image_size}")
        self.batch_size, self.num_workers, self.image_size, self.seed = batch_size, num_workers, image_size, seed
        self.datasets: dict[str, VisionDataset] = {}
        #: epoch a resumed run trains first (from the checkpoint's datamodule state; 0 for a new run).
        self.resume_epoch = 0

    @abstractmethod
    def build_dataset(self, split: str) -> VisionDataset:
        """The dataset of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""

    def dataset(self, split: str) -> VisionDataset:
        """The (cached) dataset of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        return self.datasets[split]

    def predict_dataset(self) -> VisionDataset:
        """The dataset ``predict`` runs on: the ``test`` split (subclasses may point it elsewhere)."""
        return self.dataset("test")

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self.predict_dataset()
            return
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in needed.get(stage, SPLITS):
            self.dataset(split)

    def _loader(self, split: str | VisionDataset, sampler: Any = None) -> DataLoader:
        return DataLoader(
            self.dataset(split) if isinstance(split, str) else split,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        data = self.dataset("train")
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            distributed = EpochTaggedDistributedSampler if self.tag_epochs else DistributedSampler
            sampler = distributed(
                data, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=True, seed=self.seed
            )
        else:
            sampler = EpochSeededSampler(len(data), self.seed)
            sampler = EpochTaggedSampler(sampler) if self.tag_epochs else sampler
        # Lightning builds the loader's iterator (worker processes prefetch their first indices) before
        # it calls set_epoch, and a resumed run builds it before its loops are restored: start the
        # sampler at the epoch to run, from the loop or from the checkpoint (see load_state_dict).
        sampler.set_epoch(max(self._training_epoch(), self.resume_epoch))
        return self._loader("train", sampler)

    def _training_epoch(self) -> int:
        """The epoch the trainer's fit loop runs next (0 without a trainer): the value Lightning passes to ``set_epoch``."""
        try:
            return int(self.trainer.fit_loop.epoch_progress.current.processed)
        except (AttributeError, RuntimeError):
            return 0

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the epoch a run resumed from this checkpoint trains next."""
        return {"epoch": self._training_epoch()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the epoch to train next (Lightning calls this before it builds the training loader)."""
        self.resume_epoch = int(state_dict.get("epoch", 0))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset())

    def plot(self, sample: dict[str, Any], prediction: Any = None):
        """Draw a sample with the train dataset's ``plot``; returns a matplotlib Figure."""
        return self.dataset("train").plot(sample, prediction)
