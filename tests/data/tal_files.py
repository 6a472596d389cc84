"""Tiny temporal-action-localization files for the data tests: ActivityNet-style JSON and feature files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


def video_entry(
    duration: float, subset: str, segments: list[tuple[float, float, str]], **extra: Any
) -> dict[str, Any]:
    """One ``database`` entry: ``segments`` as ``(start, end, label)``; ``extra`` keys written as given."""
    return {
        "duration": duration,
        "subset": subset,
        "annotations": [{"segment": [s, e], "label": label} for s, e, label in segments],
        **extra,
    }


def write_activitynet_json(path: Path, database: dict[str, Any], **top: Any) -> Path:
    """Write ``{"database": database, **top}`` to ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"database": database, **top}))
    return path


def thumos_database() -> dict[str, Any]:
    """THUMOS14-style subsets: two ``validation`` (trained on) videos, one ``test`` video (no segments).

    ``val_a``: 10 s, "LongJump" [1, 3] and "Diving" [5, 9]; ``val_b``: 8 s, "Diving" [0.5, 2];
    ``test_a``: 6 s, no segments.
    """
    return {
        "val_a": video_entry(
            10.0, "validation", [(1.0, 3.0, "LongJump"), (5.0, 9.0, "Diving")], url="", resolution="32x32"
        ),
        "val_b": video_entry(8.0, "validation", [(0.5, 2.0, "Diving")]),
        "test_a": video_entry(6.0, "test", []),
    }


def write_features(root: Path, video_id: str, features: np.ndarray | torch.Tensor, ext: str = ".npy") -> Path:
    """Write ``features`` as ``root/<video_id><ext>`` (``.npy`` with NumPy, ``.pt`` with ``torch.save``)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{video_id}{ext}"
    if ext == ".pt":
        torch.save(torch.as_tensor(features), path)
    else:
        np.save(path, np.asarray(features))
    return path


def ramp_features(length: int, dim: int = 4) -> np.ndarray:
    """``(length, dim)`` float32 features whose step ``t`` holds ``t`` in every dimension."""
    return np.repeat(np.arange(length, dtype=np.float32)[:, None], dim, 1)
