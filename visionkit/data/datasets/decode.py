"""Decode image files to float pixels in [0, 1]: 8-bit, 16-bit and float images, TIFF and ``.npy``.

Every decoder returns float32 ``(H, W, C)`` pixels; :func:`read_image` then sets the channel
count and resizes in float, so 16-bit and float images keep their precision.

* 8-bit images (and palette, 1-bit, LA, RGBA, CMYK, ...) go through Pillow's ``convert`` and
  are divided by 255.
* 16-bit images (Pillow modes ``I;16*``, and ``I`` with values in [0, 65535]) are divided by 65535.
  Pillow reads 16-bit *colour* PNGs at 8-bit precision; 16-bit colour TIFFs are exact.
* Float images (Pillow mode ``F``, float TIFF, float ``.npy``) must lie in [0, 1].
* ``.tif``/``.tiff`` are read with tifffile (first page; exact for every sample type), and with
  Pillow when tifffile cannot read the file.
* ``.npy``: a 2-D ``(H, W)`` or 3-D ``(H, W, C)`` array, ``C`` in 1-4; uint8 (/255), uint16
  (/65535) or float in [0, 1].

Alpha channels are dropped (as Pillow's ``convert`` does). NaN/Inf pixels, values out of range and
unsupported shapes or dtypes raise :class:`~visionkit.data.errors.ImageReadError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visionkit.data.errors import ImageReadError

#: ITU-R 601-2 luma weights (Pillow's RGB -> L) for RGB -> grey.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Pillow modes whose pixels Pillow's ``convert`` would clip or zero: decoded from the raw values.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | Path, image_size: int | None = None, channels: int = 3) -> torch.Tensor:
    """Decode an image file to float32 ``(channels, H, W)`` in [0, 1], squashed to ``image_size`` if given.

    Args:
        path: image file (any Pillow format, ``.tif``/``.tiff`` or ``.npy``).
        image_size: output side in pixels (bilinear, in float); ``None`` keeps the file's size.
        channels: 3 (RGB; grey is replicated) or 1 (grey; RGB by the ITU-R 601-2 luma weights).

    Raises:
        ImageReadError: the file is missing, cannot be decoded, has NaN/Inf pixels or values out of range.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    try:
        pixels = _decode(path, channels)
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - decoders raise many types; all mean "unreadable"
        raise ImageReadError(path, err) from err
    pixels = _set_channels(pixels, channels)
    if image_size is not None and pixels.shape[:2] != (image_size, image_size):
        pixels = _resize(pixels, image_size)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def _decode(path: Path, channels: int) -> np.ndarray:
    """Float32 ``(H, W, C)`` pixels in [0, 1] of ``path`` (``C`` is the file's channel count, alpha dropped)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return to_unit_pixels(np.load(path, allow_pickle=False), path, ".npy array")
    if suffix in TIFF_SUFFIXES:
        raw = _read_tiff(path)
        if raw is not None:
            return to_unit_pixels(raw, path, f"TIFF {raw.dtype}")
    return _read_pil(path, channels)


def _read_tiff(path: Path) -> np.ndarray | None:
    """The first page of a TIFF as ``(H, W[, S])``, or ``None`` when tifffile cannot read it (Pillow then tries)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    except Exception:  # noqa: BLE001 - missing module, compression codec, not a TIFF: let Pillow try
        return None
    return np.moveaxis(arr, 0, -1) if planar and arr.ndim == 3 else arr


def _read_pil(path: Path, channels: int) -> np.ndarray:
    """Pixels through Pillow: wide modes from their raw values, everything else through ``convert``."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in WIDE_MODES:
            return to_unit_pixels(np.asarray(img), path, f"mode {img.mode}")
        return to_unit_pixels(np.asarray(img.convert("RGB" if channels == 3 else "L")), path, f"mode {img.mode}")


def to_unit_pixels(arr: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Float32 ``(H, W, C)`` in [0, 1] from a raw ``(H, W)`` or ``(H, W, C)`` array (``C`` 1-4, alpha dropped).

    uint8 is divided by 255, uint16 (and other integers within [0, 65535]) by 65535; floats must
    lie in [0, 1]. ``what`` describes the source in messages (``"mode F"``, ``".npy array"``).

    Raises:
        ImageReadError: unsupported shape or dtype, NaN/Inf pixels, or values out of range.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or arr.size == 0:
        raise ImageReadError(path, f"{what} has shape {tuple(arr.shape)}; expected (H, W) or (H, W, C) with C in 1-4")
    arr = arr[..., :1] if arr.shape[-1] == 2 else arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 65535:
            raise ImageReadError(path, f"{what} has values in [{low}, {high}]; expected 16-bit values in [0, 65535]")
        return (arr.astype(np.float64) / 65535.0).astype(np.float32)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageReadError(path, f"{what} has dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ImageReadError(path, f"{what} has {bad} NaN/Inf pixel values; expected finite values in [0, 1]")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ImageReadError(path, f"{what} has values in [{low:.6g}, {high:.6g}]; expected float pixels in [0, 1]")
    return arr.astype(np.float32)


def _set_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, C)`` -> ``(H, W, channels)``: grey replicated to RGB, RGB to grey by :data:`LUMA`."""
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    return (pixels @ LUMA)[..., None].astype(np.float32)


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float ``(H, W, C)`` to ``(size, size, C)``, one Pillow float image per channel."""
    from PIL import Image

    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c])).resize((size, size), Image.BILINEAR))
        for c in range(pixels.shape[-1])
    ]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0).astype(np.float32)
