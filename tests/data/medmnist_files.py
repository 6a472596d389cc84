"""Tiny MedMNIST-style ``.npz`` files for the data tests: the official keys, dtypes and shapes, few images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COUNTS = {"train": 12, "val": 6, "test": 6}


def medmnist_arrays(
    side: int = 28,
    rgb: bool = False,
    num_classes: int = 3,
    label_columns: int | None = None,
    depth: int | None = None,
    counts: dict[str, int] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``{split}_images`` / ``{split}_labels`` arrays as in the official files.

    Images are uint8 ``(N, side, side)``, ``(N, side, side, 3)`` with ``rgb`` or ``(N, depth, side, side)``
    with ``depth`` (3D flags); image ``i`` of a split has grey level ``10 * i`` (+ 1, 2 on the G, B channels).
    Labels are uint8 ``(N, 1)`` cycling through ``num_classes`` (every class in every split when
    ``N >= num_classes``), or ``(N, label_columns)`` 0/1 columns.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (counts or COUNTS).items():
        levels = (10 * np.arange(n)).astype(np.uint8)
        if depth is not None:
            images = np.broadcast_to(levels[:, None, None, None], (n, depth, side, side))
        elif rgb:
            images = levels[:, None, None, None] + np.array([0, 1, 2], np.uint8)
            images = np.broadcast_to(images, (n, side, side, 3))
        else:
            images = np.broadcast_to(levels[:, None, None], (n, side, side))
        arrays[f"{split}_images"] = np.ascontiguousarray(images, dtype=np.uint8)
        if label_columns is None:
            arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8)[:, None]
        else:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n, label_columns)).astype(np.uint8)
    return arrays


def write_medmnist(
    root: Path, flag: str = "organamnist", size: int | None = None, drop: tuple[str, ...] = (),
    compressed: bool = True, **kwargs,
) -> Path:
    """Write ``{root}/{flag}.npz`` (``size=None``) or ``{root}/{flag}_{size}.npz`` from :func:`medmnist_arrays`
    (``kwargs``), without the keys in ``drop``; returns the file."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = medmnist_arrays(**kwargs)
    path = root / (f"{flag}.npz" if size is None else f"{flag}_{size}.npz")
    kept = {k: v for k, v in arrays.items() if k not in drop}
    (np.savez_compressed if compressed else np.savez)(path, **kept)
    return path
