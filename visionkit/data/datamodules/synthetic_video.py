"""Datamodules of the generated video sets: moving-digit clips and the synthetic TAL sequences.

The 1797 scikit-learn digit images are split once (seeded) into train/val/test pools of 1197/300/300,
so validation and test clips show handwriting the model never trained on.
"""

from __future__ import annotations

from typing import Any

from visionkit.data.datamodules.base import split_sizes
from visionkit.data.datamodules.synthetic_shapes import SPLIT_SEED_OFFSET
from visionkit.data.datamodules.video_base import VideoDataModule
from visionkit.data.datasets.digits import split_digit_indices
from visionkit.data.datasets.moving_digits import MovingDigits
from visionkit.data.datasets.synthetic_tal import SyntheticTAL

#: Digit images per split pool.
DIGIT_POOLS = {"train": 1197, "val": 300, "test": 300}


class MovingDigitsDataModule(VideoDataModule):
    """Clips of a digit moving over a static texture; label = the digit (10 classes).

    Args:
        num_frames: frames per clip ``T``.
        num_train, num_val, num_test: clips per split.
        background: ``"camera"`` (static photo texture) or ``"zeros"``.
        noise: per-frame Gaussian pixel noise (standard deviation).
        channels: 1 (grey) or 3 (grey repeated).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size`` (canvas side), ``seed`` of the base.
    """

    default_batch_size = 32

    def __init__(
        self,
        num_frames: int = 8,
        num_train: int = 3000,
        num_val: int = 600,
        num_test: int = 600,
        background: str = "camera",
        noise: float = 0.02,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.in_channels = 10, channels
        self.num_frames, self.background, self.noise = num_frames, background, noise
        self.sizes = split_sizes(num_train, num_val, num_test)
        self.pools = split_digit_indices(self.seed, DIGIT_POOLS)
        self.build_dataset("val")  # checks the arguments now

    def build_dataset(self, split: str) -> MovingDigits:
        return MovingDigits(
            self.sizes[split], self.pools[split], self.num_frames, self.image_size, background=self.background,
            noise=self.noise, channels=self.in_channels, seed=self.seed + SPLIT_SEED_OFFSET[split],
        )


class SyntheticTALDataModule(VideoDataModule):
    """Sequences of digit frames with digit "actions" to localize (see :class:`SyntheticTAL`).

    Args:
        num_frames: frames per sequence ``T``.
        fps: nominal frame rate (segment times are frame positions / fps).
        action_classes: the digits that are actions (label ``k`` = ``action_classes[k]``).
        min_length, max_length: action length range in frames.
        max_segments: at most this many actions per sequence.
        num_train, num_val, num_test: sequences per split.
        channels: 1 (grey) or 3 (grey repeated).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size`` (frame side), ``seed`` of the base.
    """

    default_batch_size = 8
    default_image_size = 16

    def __init__(
        self,
        num_frames: int = 64,
        fps: float = 8.0,
        action_classes: tuple[int, ...] = (0, 1, 2),
        min_length: int = 6,
        max_length: int = 20,
        max_segments: int = 3,
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 128,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.in_channels = len(action_classes), channels
        self.options = {
            "num_frames": num_frames, "fps": fps, "action_classes": tuple(action_classes), "min_length": min_length,
            "max_length": max_length, "max_segments": max_segments,
        }
        self.sizes = split_sizes(num_train, num_val, num_test)
        self.pools = split_digit_indices(self.seed, DIGIT_POOLS)
        self.build_dataset("val")  # checks the arguments now

    def build_dataset(self, split: str) -> SyntheticTAL:
        return SyntheticTAL(
            self.sizes[split], self.pools[split], image_size=self.image_size, channels=self.in_channels,
            seed=self.seed + SPLIT_SEED_OFFSET[split], **self.options,
        )
