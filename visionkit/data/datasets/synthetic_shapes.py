"""SyntheticShapes: coloured shapes on textured backgrounds, generated per index (no files, no downloads).

Every item is a pure function of ``(seed, index)``, so two instances, two worker processes or
two runs give identical samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.base import VisionDataset

#: Shape classes, in label order.
SHAPES = ["circle", "square", "triangle", "cross", "diamond", "ring", "bar", "frame"]
#: Per-class tints of ``SyntheticMultiShapes(class_colours=True)``, in label order (RGB in [0, 1]).
CLASS_COLOURS = [
    (0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.85, 0.1),
    (0.85, 0.1, 0.85), (0.1, 0.85, 0.85), (0.95, 0.5, 0.05), (0.45, 0.1, 0.6),
]


def shape_mask(kind: str, dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    """Boolean mask of shape ``kind`` with half-size ``s`` px, at offsets ``dx``, ``dy`` from its centre."""
    ax, ay, r = np.abs(dx), np.abs(dy), np.hypot(dx, dy)
    if kind == "circle":
        return r <= s
    if kind == "square":
        return np.maximum(ax, ay) <= 0.85 * s
    if kind == "triangle":
        return (dy <= 0.8 * s) & (ax <= (dy + s) * 0.55)
    if kind == "cross":
        return ((ax <= 0.3 * s) & (ay <= s)) | ((ay <= 0.3 * s) & (ax <= s))
    if kind == "diamond":
        return ax + ay <= 1.1 * s
    if kind == "ring":
        return (r <= s) & (r >= 0.55 * s)
    if kind == "bar":
        return (ax <= s) & (ay <= 0.35 * s)
    if kind == "frame":
        return (np.maximum(ax, ay) <= 0.9 * s) & (np.maximum(ax, ay) >= 0.55 * s)
    raise ValueError(f"unknown shape '{kind}'; expected one of {SHAPES}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured ``(H, W, 3)`` background: a colour gradient, stripes and smooth noise, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.2, 0.8, 3)
    tilt = rng.uniform(-0.25, 0.25, (2, 3))
    img = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
    angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 6)
    stripes = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    img = img + 0.08 * stripes[..., None] * rng.uniform(-1, 1, 3)
    coarse = rng.normal(0, 0.08, (5, 5, 3))
    idx = np.linspace(0, 4, size)
    ii, jj = np.meshgrid(idx, idx, indexing="ij")
    i0, j0 = np.floor(ii).astype(int).clip(0, 3), np.floor(jj).astype(int).clip(0, 3)
    fi, fj = (ii - i0)[..., None], (jj - j0)[..., None]
    noise = (
        coarse[i0, j0] * (1 - fi) * (1 - fj)
        + coarse[i0 + 1, j0] * fi * (1 - fj)
        + coarse[i0, j0 + 1] * (1 - fi) * fj
        + coarse[i0 + 1, j0 + 1] * fi * fj
    )
    return np.clip(img + noise + rng.normal(0, 0.02, img.shape), 0, 1)


def _gratings(rng: np.random.Generator, size: int) -> np.ndarray:
    """A mid-grey ``(H, W, 3)`` background with 2 random sinusoidal gratings (frequency U(0.15, 0.6) rad/px,
    random orientation and phase, per-channel amplitude U(0.05, 0.25)) and Gaussian noise (sigma 0.06), in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size, 3), 0.5)
    for _ in range(2):
        freq, angle, phase = rng.uniform(0.15, 0.6), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        img = img + wave[..., None] * rng.uniform(0.05, 0.25, 3)
    return np.clip(img + rng.normal(0, 0.06, img.shape), 0, 1)


#: Backgrounds of :class:`SyntheticMultiShapes`.
BACKGROUNDS = {"texture": _background, "gratings": _gratings}


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated colour that stands out from the background's mean."""
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 1, 3)
        colour[rng.integers(3)] = rng.choice([0.05, 0.95])
        if np.abs(colour - mean).sum() > 0.6:
            return colour
    return 1.0 - mean


class SyntheticShapes(VisionDataset):
    """One coloured shape per image; the label is its shape class and ``mask`` its pixels.

    Args:
        length: number of items.
        image_size: side in pixels.
        num_classes: how many of :data:`SHAPES` to use (2 to 8).
        seed: generation seed (items depend only on ``seed`` and the index).
        min_scale, max_scale: object half-size as a fraction of the image side.

    Items: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``label`` int64 scalar; ``mask`` int64
    ``(H, W)``, 1 on the object and 0 elsewhere; ``index`` int64 scalar.
    """

    def __init__(
        self,
        length: int = 1000,
        image_size: int = 32,
        num_classes: int = 4,
        seed: int = 0,
        min_scale: float = 0.2,
        max_scale: float = 0.38,
    ) -> None:
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(f"num_classes must be between 2 and {len(SHAPES)}, got {num_classes}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {image_size}")
        if not 0 < min_scale <= max_scale < 0.5:
            raise ValueError(f"need 0 < min_scale <= max_scale < 0.5, got {min_scale}, {max_scale}")
        self.length, self.image_size, self.seed = length, image_size, seed
        self.min_scale, self.max_scale = min_scale, max_scale
        self.classes = SHAPES[:num_classes]

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {self.length}")
        return np.random.default_rng([self.seed, index])

    def _colour(self, rng: np.random.Generator, img: np.ndarray, kind: str) -> np.ndarray:
        """The fill colour of a shape of class ``kind`` painted into ``img``."""
        return _object_colour(rng, img)

    def _draw(self, rng: np.random.Generator, img: np.ndarray, kind: str, avoid: np.ndarray | None = None):
        """Paint one shape into ``img`` in place; returns its boolean mask."""
        size = self.image_size
        s = rng.uniform(self.min_scale, self.max_scale) * size
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        for _ in range(10):
            cx, cy = rng.uniform(s, size - s, 2)
            m = shape_mask(kind, xx - cx, yy - cy, s)
            if avoid is None or (m & avoid).sum() < 0.1 * m.sum():
                break
        img[m] = self._colour(rng, img, kind)
        return m

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(index)
        label = int(rng.integers(len(self.classes)))
        img = _background(rng, self.image_size)
        m = self._draw(rng, img, self.classes[label])
        return {
            "image": torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)),
            "label": torch.tensor(label),
            "mask": torch.from_numpy(m.astype(np.int64)),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class SyntheticMultiShapes(SyntheticShapes):
    """One to ``max_objects`` shapes of distinct classes per image, for weakly-supervised segmentation.

    Items: ``label`` float32 multi-hot ``(K,)``; ``mask`` int64 ``(H, W)`` with 0 for background
    and ``c + 1`` on pixels of class ``c`` (later shapes paint over earlier ones).

    Args:
        class_colours: paint each class in its own tint (:data:`CLASS_COLOURS` plus N(0, 0.08) jitter per
            channel and shape) instead of a random colour, so colour as well as shape tells the classes apart;
            ``False`` (default) gives the same items as before.
        background: ``"texture"`` (default, as before: a colour gradient, stripes and smooth noise) or
            ``"gratings"`` (mid grey, two random sinusoidal gratings, pixel noise). With ``class_colours`` the
            latter is the weakly-supervised segmentation set of the ToCo CPU plan.
    """

    def __init__(
        self,
        length: int = 1000,
        image_size: int = 64,
        num_classes: int = 4,
        seed: int = 0,
        min_scale: float = 0.12,
        max_scale: float = 0.22,
        max_objects: int = 3,
        class_colours: bool = False,
        background: str = "texture",
    ) -> None:
        super().__init__(length, image_size, num_classes, seed, min_scale, max_scale)
        if not 1 <= max_objects <= num_classes:
            raise ValueError(f"max_objects must be between 1 and num_classes={num_classes}, got {max_objects}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {sorted(BACKGROUNDS)}, got '{background}'")
        self.max_objects = max_objects
        self.class_colours, self.background = class_colours, background

    def _colour(self, rng: np.random.Generator, img: np.ndarray, kind: str) -> np.ndarray:
        if not self.class_colours:
            return super()._colour(rng, img, kind)
        tint = np.asarray(CLASS_COLOURS[SHAPES.index(kind)])
        return np.clip(tint + rng.normal(0, 0.08, 3), 0, 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(index)
        count = int(rng.integers(1, self.max_objects + 1))
        labels = rng.choice(len(self.classes), size=count, replace=False)
        img = BACKGROUNDS[self.background](rng, self.image_size)
        mask = np.zeros((self.image_size, self.image_size), np.int64)
        for c in labels:
            m = self._draw(rng, img, self.classes[c], avoid=mask > 0)
            mask[m] = c + 1
        present = np.unique(mask[mask > 0]) - 1  # a shape fully painted over is not in the label
        multi_hot = np.zeros(len(self.classes), np.float32)
        multi_hot[present] = 1.0
        return {
            "image": torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)),
            "label": torch.from_numpy(multi_hot),
            "mask": torch.from_numpy(mask),
            "index": torch.tensor(index, dtype=torch.int64),
        }
