"""Per-snippet feature files of temporal action localization: finding them and reading them.

A video's features are ``<features_root>/<video_id>.npy`` (a NumPy array) or ``.pt`` (a tensor saved with
``torch.save``, read with ``torch.load(weights_only=True)``), shaped ``(T, D)``: time steps first. Feature
step ``t`` is centred at ``feature_offset + t / feature_fps`` seconds from the video's start (usually the
centre of the frames it summarises) and stands for the ``1 / feature_fps`` seconds around it (see
:mod:`visionkit.data.datasets.temporal_actions` for the time span of samples). Example, ActionFormer's THUMOS14 I3D features: 30 fps video, a 16-frame window every 4 frames,
so ``feature_fps = 30 / 4 = 7.5`` and ``feature_offset = (16 / 2) / 30 = 8 / 30`` s.

Bad files raise :class:`~visionkit.data.errors.FeatureReadError` (one line naming the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visionkit.data.errors import DatasetNotFoundError, FeatureReadError

__all__ = [
    "FEATURE_EXTENSIONS",
    "FEATURE_LAYOUT",
    "feature_shape",
    "find_feature_files",
    "read_features",
]

#: Feature file extensions, in order of preference when a video has both.
FEATURE_EXTENSIONS = (".npy", ".pt")
FEATURE_LAYOUT = "<features_root>/<video_id>.npy or .pt holding a (T, D) array (time steps first)"


def _listing(root: Path, name: str, layout: str) -> tuple[dict[str, list[Path]], set[str]]:
    """``({stem: [files]}, {folder names})`` of ``root`` (one directory listing)."""
    if not root.is_dir():
        raise DatasetNotFoundError(
            name, root, layout, "is not a folder" if root.exists() else "does not exist"
        )
    files: dict[str, list[Path]] = {}
    folders: set[str] = set()
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir():
                folders.add(entry.name)
            else:
                path = Path(entry.path)
                files.setdefault(path.stem, []).append(path)
    return files, folders


def find_feature_files(
    root: str | Path, video_ids: list[str], name: str = "TemporalActionFeatures"
) -> dict[str, Path]:
    """The feature file ``<id>.npy`` (preferred) or ``<id>.pt`` of each id under ``root``.

    Raises:
        DatasetNotFoundError: ``root`` is missing, or an id has no feature file (naming the id and the
            paths tried).
    """
    root = Path(root)
    files, _ = _listing(root, name, FEATURE_LAYOUT)
    found: dict[str, Path] = {}
    for video_id in video_ids:
        by_ext = {p.suffix: p for p in files.get(video_id, [])}
        path = next((by_ext[e] for e in FEATURE_EXTENSIONS if e in by_ext), None)
        if path is None:
            tried = " or ".join(str(root / f"{video_id}{e}") for e in FEATURE_EXTENSIONS)
            raise DatasetNotFoundError(
                name, root, FEATURE_LAYOUT, f"has no features for video id '{video_id}' (tried {tried})"
            )
        found[video_id] = path
    return found


def _load_array(path: Path, mmap: bool) -> np.ndarray | Tensor:
    """The array stored in ``path`` (memory-mapped when ``mmap``: its shape is then read without the data)."""
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        try:
            value = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            value = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except Exception as err:  # noqa: BLE001 - loaders raise many types; all mean "unreadable"
        raise FeatureReadError(path, err) from err
    if not isinstance(value, Tensor):
        raise FeatureReadError(
            path, f"holds a {type(value).__name__}; expected a (T, D) tensor saved with torch.save"
        )
    return value


def _check_array(path: Path, array: np.ndarray | Tensor) -> tuple[int, int]:
    """``(T, D)`` of a feature array, checked to be a 2-D non-empty real numeric array."""
    shape = tuple(array.shape)
    if len(shape) != 2:
        raise FeatureReadError(
            path,
            f"holds an array of shape {shape}; expected (T, D): time steps first, then feature dimensions",
        )
    if shape[0] == 0 or shape[1] == 0:
        raise FeatureReadError(path, f"holds an empty array of shape {shape}; expected (T, D) with T, D >= 1")
    dtype = array.dtype
    numeric = (
        dtype.is_floating_point or (not dtype.is_complex and dtype != torch.bool)
        if isinstance(array, Tensor)
        else np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    )
    if not numeric:
        raise FeatureReadError(path, f"holds {dtype} values; expected real numbers (float or integer)")
    return int(shape[0]), int(shape[1])


def feature_shape(path: str | Path) -> tuple[int, int]:
    """``(T, D)`` of a feature file, read without loading its values where the format allows (memory map).

    Raises:
        FeatureReadError: unreadable file, not a tensor (``.pt``), not 2-D, empty, or not numeric.
    """
    path = Path(path)
    return _check_array(path, _load_array(path, mmap=True))


def read_features(path: str | Path) -> Tensor:
    """The float32 ``(T, D)`` features of a ``.npy`` or ``.pt`` file.

    Raises:
        FeatureReadError: unreadable file, not a tensor (``.pt``), not 2-D, empty, not numeric, or NaN/Inf
            values.
    """
    path = Path(path)
    array = _load_array(path, mmap=False)
    _check_array(path, array)
    features = torch.as_tensor(
        np.asarray(array, dtype=np.float32) if isinstance(array, np.ndarray) else array.float()
    )
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(1).nonzero()[0, 0])
        raise FeatureReadError(
            path, f"has NaN or Inf values (first at time step {bad}); expected finite features"
        )
    return features.contiguous()
