"""Tiny on-disk datasets for the data tests: class folders of PNGs, caption CSVs, Karpathy-split JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_image_folder(root: Path, classes: tuple[str, ...] = ("a", "b"), per_class: int = 6, size: int = 20) -> Path:
    """Write a small class-folder dataset of PNGs with seeded colours."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.full((size, size, 3), 40 + 160 * c, np.uint8) + rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:02d}.png")
    return root


def write_pngs(folder: Path, count: int, size: int = 12) -> list[Path]:
    """Write ``count`` PNGs ``img<i>.png`` of grey level ``20 * i`` (``size`` px square) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((size, size, 3), 20 * i, np.uint8)).save(path)
        paths.append(path)
    return paths



def write_png(path: Path, value: int, size: int = 10) -> Path:
    """Write a ``size`` px square PNG of grey level ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def write_csv(
    path: Path, rows: list[list[str]], header: tuple[str, ...] = ("image", "caption"), delimiter: str = ","
) -> Path:
    """Write a caption CSV with ``header`` and ``rows``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def karpathy_entries() -> list[dict[str, Any]]:
    """Six images: two train, one restval, two val, one test; image ``i`` has ``2 + i % 2`` captions."""
    splits = ["train", "restval", "val", "test", "train", "val"]
    return [
        {
            "filepath": "train2014" if split in ("train", "restval") else "val2014",
            "filename": f"img{i}.png",
            "split": split,
            "sentences": [{"raw": f" image {i} caption {j} ", "tokens": []} for j in range(2 + i % 2)],
            "imgid": i,
        }
        for i, split in enumerate(splits)
    ]


def write_karpathy(root: Path, entries: list[dict[str, Any]] | None = None, images: bool = True) -> Path:
    """Write ``dataset.json`` (and, with ``images``, its PNGs under ``images/``); return the JSON path."""
    entries = karpathy_entries() if entries is None else entries
    root.mkdir(parents=True, exist_ok=True)
    if images:
        for i, e in enumerate(entries):
            if isinstance(e.get("filename"), str):
                write_png(root / "images" / e["filepath"] / e["filename"], 20 * i)
    (root / "dataset.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root / "dataset.json"


