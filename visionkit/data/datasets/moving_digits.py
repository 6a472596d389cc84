"""Moving digits: a handwritten digit translating over a static textured background, one clip per index.

Each clip is a pure function of ``(seed, index)``: the digit image (from the given pool of scikit-learn
digits), the start position, the direction (one of 8, 1 px per frame) and the background crop. The
label is the digit. Nothing is downloaded: digits ship with scikit-learn, the texture (the camera
photo) with scikit-image.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visionkit.data.datasets.digits import digit_images
from visionkit.data.datasets.video_base import VideoDataset
from visionkit.data.samplers import split_key
from visionkit.errors import check_choice

#: The 8 directions of motion (dx, dy), 1 px per frame.
DIRECTIONS = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy])
BACKGROUNDS = ("camera", "zeros")


@lru_cache(maxsize=1)
def camera_texture() -> np.ndarray:
    """scikit-image's camera photo, area-downsampled 4x and dimmed to [0, 0.5]: float32 ``(128, 128)``."""
    from skimage.data import camera

    photo = camera().astype(np.float32) / 255.0
    photo = photo.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    return 0.5 * photo


def upscaled_digits(scale: int) -> np.ndarray:
    """All 1797 digits upscaled ``scale`` times (bilinear): float32 ``(1797, 8 * scale, 8 * scale)`` in [0, 1]."""
    images = torch.from_numpy(digit_images()[0])[:, None]
    return F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False).clamp(0, 1)[:, 0].numpy()


class MovingDigits(VideoDataset):
    """Clips of a white digit moving 1 px per frame in a straight line.

    Args:
        length: number of clips.
        digit_indices: the scikit-learn digit images this dataset may use (keep splits disjoint).
        num_frames: frames per clip ``T``.
        image_size: canvas side in pixels (at least ``8 * digit_scale + num_frames``).
        digit_scale: digit upscaling factor (2: a 16 px digit).
        background: ``"camera"`` (a static crop of the camera photo, different per clip) or ``"zeros"``.
        noise: standard deviation of per-frame Gaussian pixel noise.
        channels: 1 (grey) or 3 (grey repeated).
        seed: seed of the per-index draws.

    Items: ``video`` float32 ``(T, C, H, W)`` in [0, 1], ``label`` int64 (the digit), ``index`` int64.
    """

    def __init__(
        self,
        length: int,
        digit_indices: np.ndarray,
        num_frames: int = 8,
        image_size: int = 32,
        digit_scale: int = 2,
        background: str = "camera",
        noise: float = 0.02,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        check_choice("background", background, BACKGROUNDS)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if num_frames < 1 or length < 1:
            raise ValueError(f"num_frames and length must be positive, got {num_frames} and {length}")
        self.digit_size = 8 * digit_scale
        if image_size < self.digit_size + num_frames:
            raise ValueError(
                f"image_size {image_size} px leaves no room for a {self.digit_size} px digit to move "
                f"{num_frames} px; use image_size >= {self.digit_size + num_frames} or fewer frames"
            )
        self.length, self.num_frames, self.image_size = length, num_frames, image_size
        self.background, self.noise, self.seed, self.in_channels = background, noise, seed, channels
        self.digit_indices = np.asarray(digit_indices)
        self.digits = upscaled_digits(digit_scale)
        self.labels = digit_images()[1]
        self.classes = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _ = split_key(key)  # the same sample every epoch
        rng = np.random.default_rng([self.seed, index])
        digit = int(self.digit_indices[rng.integers(len(self.digit_indices))])
        dx, dy = DIRECTIONS[rng.integers(len(DIRECTIONS))]
        travel, room = self.num_frames - 1, self.image_size - self.digit_size
        x0 = rng.integers(max(0, -dx * travel), room - max(0, dx * travel) + 1)
        y0 = rng.integers(max(0, -dy * travel), room - max(0, dy * travel) + 1)
        canvas = self._background(rng)
        frames = np.repeat(canvas[None], self.num_frames, axis=0)
        glyph, s = self.digits[digit], self.digit_size
        for t in range(self.num_frames):
            x, y = x0 + dx * t, y0 + dy * t
            patch = frames[t, y : y + s, x : x + s]
            frames[t, y : y + s, x : x + s] = np.maximum(patch, glyph)
        if self.noise > 0:
            frames = frames + rng.normal(0, self.noise, frames.shape).astype(np.float32)
        video = torch.from_numpy(np.clip(frames, 0, 1).astype(np.float32))[:, None]
        if self.in_channels == 3:
            video = video.expand(-1, 3, -1, -1).clone()
        return {"video": video, "label": torch.tensor(self.labels[digit]), "index": torch.tensor(index)}

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        if self.background == "zeros":
            return np.zeros((self.image_size, self.image_size), np.float32)
        texture = camera_texture()
        size = min(self.image_size, texture.shape[0])
        top, left = rng.integers(0, texture.shape[0] - size + 1, 2)
        crop = texture[top : top + size, left : left + size]
        if size < self.image_size:
            crop = F.interpolate(torch.from_numpy(crop)[None, None], size=self.image_size, mode="bilinear")[0, 0].numpy()
        return crop.astype(np.float32).copy()
