"""SynthRad: a synthetic, RadImageNet-like "modality__organ" dataset, generated per index (no files).

Each image shows one soft-edged *organ* (a shape drawn from a signed distance function) imaged by one of
three *modalities* with distinct low-level statistics:

* ``CT``: dark background, bright organ, sharp edges, additive Gaussian noise (sigma about 0.05).
* ``MR``: smooth polynomial bias field (x0.7 to x1.3), contrast inverted in half of the images,
  Rician noise (magnitude of a complex Gaussian), softer edges.
* ``US``: fan-shaped field of view (black outside), multiplicative speckle (the magnitude of a complex
  Gaussian field blurred by the sigma = 1 px point-spread function: Rayleigh, grains of about 2 px, shown
  log-compressed as ``envelope ** 0.6`` and mean-normalised), the tissue blurred by the same sigma, a
  hypo- or hyperechoic organ, depth attenuation.

The organ is centred within +-3 px (at 32 px; scaled with ``image_size``), scaled by +-15 % and rotated by
a uniform angle. Shape is the semantic signal; modality is a strong low-level shortcut.

Label spaces (``task``):

* ``"pretrain"``: 12 ``modality__organ`` classes over organs 0-5; each modality has 4 organs and each of
  these organs appears in exactly 2 modalities (:data:`PRETRAIN_CLASSES`)::

      label  class            label  class            label  class
      0      CT__disc         4      MR__disc         8      US__ring
      1      CT__ellipse      5      MR__ellipse      9      US__crescent
      2      CT__ring         6      MR__blobs        10     US__blobs
      3      CT__crescent     7      MR__bar          11     US__bar

* ``"unseen"``: organs 6-7 (never seen in pre-training) in all 3 modalities, 6 classes
  (:data:`UNSEEN_CLASSES`): ``CT__triangle, CT__cross, MR__triangle, MR__cross, US__triangle, US__cross``.

Item ``i`` has label ``i % num_classes`` (any length that is a multiple of ``num_classes`` is exactly
balanced) and is a pure function of ``(seed, task, i)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.base import VisionDataset
from visionkit.errors import check_choice

#: Modalities, in index order (the ``modality`` field of a sample).
MODALITIES = ["CT", "MR", "US"]
#: Organ shapes, in index order (the ``organ`` field of a sample); 0-5 pre-training, 6-7 unseen.
ORGANS = ["disc", "ellipse", "ring", "crescent", "blobs", "bar", "triangle", "cross"]
#: ``(modality, organ)`` of each pre-training class, in label order.
PRETRAIN_CLASSES = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 4), (1, 5), (2, 2), (2, 3), (2, 4), (2, 5)]
#: ``(modality, organ)`` of each unseen-concept class, in label order.
UNSEEN_CLASSES = [(m, o) for m in range(3) for o in (6, 7)]
#: The label spaces of :class:`SynthRad`'s ``task`` argument.
TASKS = {"pretrain": PRETRAIN_CLASSES, "unseen": UNSEEN_CLASSES}
#: Keeps the random streams of the two tasks apart (an item's generator is seeded with ``[seed, id, index]``).
TASK_IDS = {"pretrain": 0, "unseen": 1}


def class_name(modality: int, organ: int) -> str:
    """``"CT__disc"`` for ``(0, 0)``."""
    return f"{MODALITIES[modality]}__{ORGANS[organ]}"


def _box(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Signed distance to the axis-aligned box of half-sizes ``a``, ``b``."""
    qx, qy = np.abs(u) - a, np.abs(v) - b
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _triangle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance to the equilateral triangle of half-side ``r``, centred on its centroid, apex up (-v)."""
    k = np.sqrt(3.0)
    px, py = np.abs(u) - r, -v + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.hypot(px, py) * np.sign(py)


def organ_sdf(organ: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to organ ``organ`` in unit coordinates (the organ spans about [-1, 1])."""
    r = np.hypot(u, v)
    if organ == 0:  # disc
        return r - 0.8
    if organ == 1:  # elongated ellipse, semi-axes 1.0 and 0.5 (Quilez's distance approximation)
        a, b = 1.0, 0.5
        k0 = np.hypot(u / a, v / b)
        k1 = np.maximum(np.hypot(u / a**2, v / b**2), 1e-6)
        return k0 * (k0 - 1) / k1
    if organ == 2:  # ring
        return np.abs(r - 0.7) - 0.2
    if organ == 3:  # crescent: a disc minus an offset disc
        return np.maximum(r - 0.85, 0.7 - np.hypot(u - 0.4, v))
    if organ == 4:  # paired blobs
        return np.minimum(np.hypot(u - 0.5, v), np.hypot(u + 0.5, v)) - 0.38
    if organ == 5:  # bar
        return _box(u, v, 0.95, 0.22)
    if organ == 6:  # triangle
        return _triangle(u, v, 0.8)
    if organ == 7:  # cross
        return np.minimum(_box(u, v, 0.85, 0.24), _box(u, v, 0.24, 0.85))
    raise ValueError(f"organ must be an index in 0..{len(ORGANS) - 1}, got {organ}")


@lru_cache(maxsize=16)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)`` Gaussian blur matrix with reflected borders: ``B @ img @ B.T`` blurs ``img``."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((size, size))
    for i in range(size):
        for off, w in zip(offsets, kernel, strict=True):
            j = i + off
            j = -j - 1 if j < 0 else (2 * size - j - 1 if j >= size else j)  # reflect (edge pixel repeated)
            matrix[i, min(max(j, 0), size - 1)] += w
    return matrix


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``(size, size)``."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return yy, xx


def render(rng: np.random.Generator, modality: int, organ: int, size: int) -> np.ndarray:
    """One float32 ``(size, size)`` image in [0, 1] of ``organ`` seen by ``modality``, drawn from ``rng``."""
    px = size / 32  # the geometry below is specified at 32 px
    yy, xx = _grid(size)
    radius = 0.3 * size * rng.uniform(0.85, 1.15)
    cx, cy = size / 2 + rng.uniform(-3 * px, 3 * px, 2)
    theta = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(theta), np.sin(theta)
    dx, dy = xx - cx, yy - cy
    dist = organ_sdf(organ, (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius) * radius  # px

    if modality == 0:  # CT
        occ = 0.5 - 0.5 * np.tanh(dist / (2 * 0.3 * px))
        bg, fg = rng.uniform(0.03, 0.15), rng.uniform(0.65, 0.9)
        img = bg + (fg - bg) * occ + rng.normal(0, rng.uniform(0.04, 0.06), (size, size))
    elif modality == 1:  # MR
        occ = 0.5 - 0.5 * np.tanh(dist / (2 * 0.7 * px))
        bg, fg = rng.uniform(0.12, 0.3), rng.uniform(0.6, 0.85)
        base = bg + (fg - bg) * occ
        if rng.random() < 0.5:
            base = 1.0 - base  # inverted contrast (a T2-like look: bright background, dark organ)
        u, v = xx / size * 2 - 1, yy / size * 2 - 1
        coef = rng.normal(0, 1, 5)
        poly = coef[0] * u + coef[1] * v + coef[2] * u * u + coef[3] * v * v + coef[4] * u * v
        field = 1 + rng.uniform(0.15, 0.3) * poly / max(np.abs(poly).max(), 1e-6)
        sigma = rng.uniform(0.03, 0.06)
        noise = rng.normal(0, sigma, (2, size, size))
        img = np.hypot(base * field + noise[0], noise[1])
    elif modality == 2:  # US
        blur = _blur_matrix(size, 1.0 * px)
        occ = 0.5 - 0.5 * np.tanh(dist / (2 * 0.5 * px))
        bg = rng.uniform(0.35, 0.5)
        fg = rng.uniform(0.03, 0.1) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)  # hypo- or hyperechoic
        tissue = blur @ (bg + (fg - bg) * occ) @ blur.T
        field = rng.normal(0, 1, (2, size, size))
        speckle = np.hypot(blur @ field[0] @ blur.T, blur @ field[1] @ blur.T) ** 0.6  # log-compressed display
        speckle /= speckle.mean()
        apex_x, apex_y = size / 2 + rng.uniform(-1, 1) * px, -0.35 * size
        depth = np.hypot(xx - apex_x, yy - apex_y)
        angle = np.abs(np.arctan2(xx - apex_x, yy - apex_y))
        fan = (angle <= np.deg2rad(rng.uniform(40, 46))) & (depth <= size * rng.uniform(1.2, 1.3))
        atten = np.exp(-rng.uniform(0.2, 0.5) * (yy / size))
        img = tissue * speckle * atten * fan
    else:
        raise ValueError(f"modality must be an index in 0..{len(MODALITIES) - 1}, got {modality}")
    return np.clip(img, 0, 1).astype(np.float32)


class SynthRad(VisionDataset):
    """Synthetic radiology-like images, label ``modality__organ`` (see the module docstring for the table).

    Args:
        length: number of items.
        image_size: side in pixels (at least 16).
        task: ``"pretrain"`` (12 classes, organs 0-5) or ``"unseen"`` (6 classes, organs 6-7).
        channels: 1 (grey) or 3 (grey repeated, for RGB backbones).
        seed: generation seed (items depend only on ``seed``, ``task`` and the index).

    Items: ``image`` float32 ``(channels, H, W)`` in [0, 1]; ``label`` int64 (``index % num_classes``);
    ``modality`` int64 (index into :data:`MODALITIES`); ``organ`` int64 (index into :data:`ORGANS`);
    ``index`` int64.
    """

    def __init__(
        self, length: int = 1800, image_size: int = 32, task: str = "pretrain", channels: int = 1, seed: int = 0
    ) -> None:
        check_choice("task", task, list(TASKS))
        if length < 1:
            raise ValueError(f"length must be a positive integer, got {length}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.length, self.image_size, self.task, self.seed = length, image_size, task, seed
        self.in_channels = channels
        self.table = TASKS[task]
        self.classes = [class_name(m, o) for m, o in self.table]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for SynthRad of length {self.length}")
        rng = np.random.default_rng([self.seed, TASK_IDS[self.task], index])
        label = index % len(self.table)
        modality, organ = self.table[label]
        image = torch.from_numpy(render(rng, modality, organ, self.image_size))[None]
        if self.in_channels == 3:
            image = image.expand(3, -1, -1).clone()
        return {
            "image": image,
            "label": torch.tensor(label, dtype=torch.int64),
            "modality": torch.tensor(modality, dtype=torch.int64),
            "organ": torch.tensor(organ, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
