"""``VideoDataModule``: the video datamodules' batching and per-epoch sample randomness."""

from __future__ import annotations

from typing import Any, ClassVar

from visionkit.data.collate import collate_samples
from visionkit.data.datamodules.base import VisionDataModule


class VideoDataModule(VisionDataModule):
    """Base of the video datamodules.

    Batches keep variable-length fields (``segments``, ``segment_labels``) as lists
    (:func:`~visionkit.data.collate.collate_samples`), and training indices reach the dataset as
    ``(index, epoch)`` so clip positions and augmentations are drawn from ``(seed, index, epoch)``:
    identical in every worker and after a resume, different each epoch. ``image_size`` is the frame side.
    """

    collate_fn: ClassVar[Any] = staticmethod(collate_samples)
    tag_epochs: ClassVar[bool] = True
    default_batch_size = 16
