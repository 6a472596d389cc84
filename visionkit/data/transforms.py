"""Clip augmentation: one random resized crop and flip, drawn once per clip and applied to every frame."""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from visionkit.errors import ConfigValueError

#: ITU-R 601-2 luma weights (RGB -> grey), as Pillow's ``convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_grey(video: Tensor) -> Tensor:
    """``(T, 3, H, W)`` RGB frames -> ``(T, 1, H, W)`` grey by the ITU-R 601-2 luma weights."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=video.dtype, device=video.device).view(1, 3, 1, 1)
    return (video * weights).sum(1, keepdim=True).clamp(0, 1)


def prepare_frames(
    video: Tensor, channels: int, size: int, augment: ClipAugment | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Decoded ``(T, 3, H, W)`` frames -> ``(T, channels, size, size)``: grey when ``channels`` is 1, then
    ``augment`` (one crop and flip for the clip) when given with a ``generator`` (training), else a resize."""
    video = to_grey(video) if channels == 1 else video
    if augment is not None and generator is not None:
        return augment(video, generator)
    return resize_frames(video, size)


def check_channels(channels: int) -> None:
    """Raise :class:`~visionkit.errors.ConfigValueError` unless ``channels`` is 1 (grey) or 3 (RGB)."""
    if channels not in (1, 3):
        raise ConfigValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")


def resize_frames(video: Tensor, size: int) -> Tensor:
    """Resize (squash) ``(T, C, H, W)`` frames to ``(T, C, size, size)`` (bilinear, antialiased, in float)."""
    if video.shape[-2:] == (size, size):
        return video
    return TF.resize(video, [size, size], antialias=True).clamp(0, 1)


class ClipAugment:
    """Random resized crop + horizontal flip with parameters drawn once per clip.

    Every frame of a clip gets the same crop box and the same flip, so motion between frames is
    preserved. Parameters come from the caller's ``torch.Generator``, so a clip's augmentation is a
    pure function of its ``(seed, index, epoch)`` (see :func:`~visionkit.data.datasets.video_base.sample_generator`).

    Args:
        size: output side in pixels.
        scale: range of the crop's area as a fraction of the frame.
        ratio: range of the crop's aspect ratio (width / height).
        flip: flip horizontally with probability 0.5.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.6, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.size, self.scale, self.ratio, self.flip = size, scale, ratio, flip

    def crop_box(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of a crop of the drawn area and aspect ratio (the whole frame if none fits in 10 tries)."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
            area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[0])
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
            w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
        return 0, 0, height, width

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        """Augment ``(T, C, H, W)`` frames to ``(T, C, size, size)``."""
        top, left, h, w = self.crop_box(video.shape[-2], video.shape[-1], generator)
        out = TF.resized_crop(video, top, left, h, w, [self.size, self.size], antialias=True).clamp(0, 1)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            out = TF.horizontal_flip(out)
        return out
