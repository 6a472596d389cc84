"""A synthetic temporal action localization set: sequences of digit frames with digit "actions".

Each sequence shows one handwritten digit per frame. Outside actions the digits come from the
background classes (3-9 by default); inside an action segment of ``min_length``-``max_length``
frames every frame is a digit of that action's class (0, 1 or 2 by default). A model must find where
each action starts and ends, and which it is. Every sequence is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.digits import digit_images
from visionkit.data.datasets.moving_digits import upscaled_digits
from visionkit.data.datasets.video_base import VideoDataset
from visionkit.data.samplers import split_key


class SyntheticTAL(VideoDataset):
    """Digit-frame sequences with 1 to ``max_segments`` non-overlapping action segments.

    Args:
        length: number of sequences.
        digit_indices: the scikit-learn digit images this dataset may use (keep splits disjoint).
        num_frames: frames per sequence ``T``.
        fps: nominal frame rate; segment times are frame positions / fps.
        action_classes: the digits that are actions, in label order (label ``k`` = ``action_classes[k]``);
            the other digits fill the background.
        min_length, max_length: action length range in frames.
        max_segments: at most this many actions per sequence (at least 1).
        image_size: frame side in pixels (the 8x8 digits are upscaled by ``image_size // 8``, then centred).
        channels: 1 (grey) or 3 (grey repeated).
        seed: seed of the per-index draws.

    Items: ``video`` ``(T, C, S, S)``, ``segments`` float32 ``(K, 2)`` seconds (start of the first action
    frame, end of the last), ``segment_labels`` int64 ``(K,)``, ``fps``, ``duration`` (= T / fps),
    ``clip_start`` (0), ``index``.
    """

    def __init__(
        self,
        length: int,
        digit_indices: np.ndarray,
        num_frames: int = 64,
        fps: float = 8.0,
        action_classes: tuple[int, ...] = (0, 1, 2),
        min_length: int = 6,
        max_length: int = 20,
        max_segments: int = 3,
        image_size: int = 16,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        if not 1 <= min_length <= max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {min_length} and {max_length}")
        if max_segments < 1 or max_segments * (max_length + 1) > num_frames:
            raise ValueError(
                f"{max_segments} segments of up to {max_length} frames do not fit apart in {num_frames} frames; "
                "use more frames, shorter or fewer segments"
            )
        if channels not in (1, 3) or image_size < 8:
            raise ValueError(f"channels must be 1 or 3 and image_size >= 8 px, got {channels} and {image_size}")
        labels = digit_images()[1]
        digit_indices = np.asarray(digit_indices)
        if not set(action_classes) < set(range(10)) or len(set(action_classes)) != len(action_classes):
            raise ValueError(f"action_classes must be distinct digits 0-9 leaving background digits, got {action_classes}")
        self.pools = {d: digit_indices[labels[digit_indices] == d] for d in range(10)}
        empty = [d for d, pool in self.pools.items() if len(pool) == 0]
        if empty:
            raise ValueError(f"digit_indices hold no image of digit(s) {empty}; give a larger pool")
        self.length, self.num_frames, self.fps, self.seed = length, num_frames, float(fps), seed
        self.action_classes = tuple(action_classes)
        self.background_classes = tuple(d for d in range(10) if d not in self.action_classes)
        self.min_length, self.max_length, self.max_segments = min_length, max_length, max_segments
        scale = image_size // 8
        self.digits, self.image_size, self.in_channels = upscaled_digits(scale), image_size, channels
        self.classes = [f"digit {d}" for d in self.action_classes]

    def __len__(self) -> int:
        return self.length

    def layout(self, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """Non-overlapping ``(first_frame, end_frame, label)`` actions, sorted, with at least one gap frame between."""
        count = int(rng.integers(1, self.max_segments + 1))
        lengths = rng.integers(self.min_length, self.max_length + 1, count)
        slack = self.num_frames - int(lengths.sum()) - (count - 1)
        cuts = np.sort(rng.integers(0, slack + 1, count))  # free frames before each action
        actions, position, used = [], 0, 0
        for k in range(count):
            position += int(cuts[k]) - used + (1 if k else 0)
            used = int(cuts[k])
            actions.append((position, position + int(lengths[k]), int(rng.integers(len(self.action_classes)))))
            position += int(lengths[k])
        return actions

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _ = split_key(key)  # the same sample every epoch
        rng = np.random.default_rng([self.seed, index])
        actions = self.layout(rng)
        digit_of_frame = rng.choice(self.background_classes, self.num_frames)
        for first, end, label in actions:
            digit_of_frame[first:end] = self.action_classes[label]
        picks = [int(self.pools[int(d)][rng.integers(len(self.pools[int(d)]))]) for d in digit_of_frame]
        glyphs = torch.from_numpy(self.digits[picks])  # (T, s, s)
        pad = self.image_size - glyphs.shape[-1]
        video = torch.nn.functional.pad(glyphs, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))[:, None]
        if self.in_channels == 3:
            video = video.expand(-1, 3, -1, -1).clone()
        segments = torch.tensor([[a[0], a[1]] for a in actions], dtype=torch.float32) / self.fps
        return {
            "video": video.float(),
            "segments": segments.reshape(-1, 2),
            "segment_labels": torch.tensor([a[2] for a in actions], dtype=torch.int64),
            "fps": self.fps,
            "duration": self.num_frames / self.fps,
            "clip_start": 0.0,
            "index": torch.tensor(index),
        }
