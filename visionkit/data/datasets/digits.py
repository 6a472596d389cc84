"""Digits: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), upsampled."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visionkit.data.datasets.base import VisionDataset

#: Images in scikit-learn's digits.
NUM_DIGITS = 1797


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 ``(1797, 8, 8)`` in [0, 1] and int64 labels ``(1797,)`` (read once)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def split_digit_indices(seed: int, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Disjoint subsets of the 1797 digit images, of the given sizes (in order), from a seeded permutation."""
    if min(sizes.values()) < 1 or sum(sizes.values()) > NUM_DIGITS:
        raise ValueError(f"digit split sizes {sizes} must be positive and sum to at most {NUM_DIGITS}")
    order = np.random.default_rng(seed).permutation(NUM_DIGITS)
    ends = np.cumsum(list(sizes.values()))
    return {name: order[end - size : end] for (name, size), end in zip(sizes.items(), ends, strict=True)}


class Digits(VisionDataset):
    """scikit-learn's digits (ships with the package; nothing is downloaded).

    Args:
        indices: which of the 1797 images to use (``None``: all).
        image_size: output side in pixels (bilinear upsampling of the 8x8 originals).
        channels: 1 (grey) or 3 (grey repeated, for RGB backbones).

    Items: ``image`` float32 ``(channels, H, W)`` in [0, 1], white digit on black; ``label`` int64;
    ``index`` int64 (position in this dataset).
    """

    def __init__(self, indices: list[int] | np.ndarray | None = None, image_size: int = 32, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        pixels, labels = digit_images()
        images = torch.from_numpy(pixels)[:, None]
        self.images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        self.images = self.images.clamp(0, 1)
        self.labels = torch.from_numpy(labels)
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        self.classes = [str(d) for d in range(10)]
        self.in_channels = channels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(self.indices[index])
        image = self.images[i]
        if self.in_channels == 3:
            image = image.expand(3, -1, -1).clone()
        return {"image": image, "label": self.labels[i], "index": torch.tensor(index, dtype=torch.int64)}
