"""Tiny PASCAL VOC-layout folders for the VOC tests: JPEGs, palette (or grey) PNG masks and split lists.

Image ``i`` is ``SIZES[i % 3]`` (width, height) with one or two class rectangles (:func:`voc_mask`), each
outlined by a 1 px ignore (255) border as in the real masks; its pixels are the rectangles' colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: (width, height) of image ``i``: ``SIZES[i % 3]``.
SIZES = ((40, 30), (36, 44), (32, 32))


def voc_id(i: int) -> str:
    return f"2007_{i:06d}"


def voc_mask(i: int) -> np.ndarray:
    """The ``(H, W)`` uint8 mask of image ``i``: background, class ``1 + 3i % 20`` in a rectangle with a 255
    border, and for odd ``i`` a second rectangle of class ``1 + (3i + 7) % 20``."""
    width, height = SIZES[i % 3]
    mask = np.zeros((height, width), np.uint8)
    boxes = [(3, 3, height // 2, width // 2, 1 + 3 * i % 20)]
    if i % 2:
        boxes.append((height // 2 + 2, width // 2 + 2, height - 3, width - 3, 1 + (3 * i + 7) % 20))
    for top, left, bottom, right, c in boxes:
        mask[top - 1 : bottom + 1, left - 1 : right + 1] = 255
        mask[top:bottom, left:right] = c
    return mask


def save_palette_png(path: Path, indices: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Save ``indices`` as a mode-P PNG (by default with random colours: only the indices carry labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = indices.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(indices, np.uint8).tobytes())
    if palette is None:
        palette = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path)
    return path


def write_voc(
    root: Path,
    count: int = 6,
    splits: dict[str, list[int]] | None = None,
    masks: str = "SegmentationClass",
) -> Path:
    """Write ``count`` images and masks and the split lists (default ``train``: 0-3, ``val``: 4 to the end).

    ``masks="SegmentationClass"`` writes palette PNGs, ``"SegmentationClassAug"`` grey (mode L) PNGs.
    """
    splits = {"train": list(range(4)), "val": list(range(4, count))} if splits is None else splits
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    colours = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    for i in range(count):
        mask = voc_mask(i)
        Image.fromarray(colours[mask]).save(root / "JPEGImages" / f"{voc_id(i)}.jpg", quality=95)
        if masks == "SegmentationClass":
            save_palette_png(root / masks / f"{voc_id(i)}.png", mask)
        else:
            (root / masks).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / masks / f"{voc_id(i)}.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        text = "".join(f"{voc_id(i)}\n" for i in items)
        (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text(text)
    return root
