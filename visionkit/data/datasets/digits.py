"""Digits: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), upsampled."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visionkit.data.datasets.base import VisionDataset


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
        from sklearn.datasets import load_digits

        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
        self.images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        self.images = self.images.clamp(0, 1)
        self.labels = torch.from_numpy(digits.target.astype(np.int64))
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
