"""read_image: 8-bit, 16-bit, float, TIFF and .npy files decode to the right [0, 1] pixels (or fail by name)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.data.datasets.decode import LUMA, read_image
from visionkit.data.errors import ImageReadError


def _close(actual: torch.Tensor, expected: np.ndarray | float, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float32)).expand_as(actual)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0.0)


def _chw(arr: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` -> ``(C, H, W)``."""
    return (arr[..., None] if arr.ndim == 2 else arr).transpose(2, 0, 1)


def _png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one): ``arr`` uint16 ``(H, W, 3)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_8bit_rgb_and_grey_png(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 128, 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    _close(read_image(tmp_path / "rgb.png"), _chw(rgb / 255.0))
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = read_image(tmp_path / "grey.png", channels=3)
    assert out.shape == (3, 4, 5)
    _close(out, np.repeat(_chw(grey / 255.0), 3, axis=0))


def test_16bit_grey_png_is_scaled_by_65535(tmp_path: Path) -> None:
    arr = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16).repeat(3, axis=0)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    grey = read_image(tmp_path / "g16.png", channels=1)
    _close(grey[0, 0, 1], 0.5, atol=1e-4)  # 32768 / 65535
    _close(grey, _chw(arr / 65535.0))
    rgb = read_image(tmp_path / "g16.png", channels=3)
    assert rgb.shape == (3, 3, 4)
    _close(rgb, np.repeat(_chw(arr / 65535.0), 3, axis=0))


def test_16bit_resize_happens_in_float(tmp_path: Path) -> None:
    # 25828 / 65535 = 0.39411 lies between the 8-bit levels 100/255 and 101/255 (0.0020 apart)
    Image.fromarray(np.full((16, 16), 25828, np.uint16)).save(tmp_path / "flat16.png")
    _close(read_image(tmp_path / "flat16.png", image_size=8), 25828 / 65535, atol=1e-5)


def test_16bit_rgb_png_is_read_at_8bit_precision(tmp_path: Path) -> None:
    arr = np.zeros((2, 3, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 65535, 32768, 300
    _png16_rgb(tmp_path / "rgb16.png", arr)
    _close(read_image(tmp_path / "rgb16.png"), _chw(arr / 65535.0), atol=1 / 255)


def test_float_tiff_in_unit_range(tmp_path: Path) -> None:
    arr = np.linspace(0.0, 1.0, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    _close(read_image(tmp_path / "f.tif", channels=1), _chw(arr))
    _close(read_image(tmp_path / "f.tif", channels=3), np.repeat(_chw(arr), 3, axis=0))
    resized = read_image(tmp_path / "f.tif", image_size=8, channels=1)
    assert resized.shape == (1, 8, 8)
    assert 0.0 <= float(resized.min()) and float(resized.max()) <= 1.0
    _close(resized.mean(), float(arr.mean()), atol=0.05)  # bilinear keeps the ramp's mean, not 0


def test_float_tiff_with_nan_names_the_file(tmp_path: Path) -> None:
    arr = np.full((4, 5), 0.25, np.float32)
    arr[1, 2] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan\.tif.*NaN/Inf"):
        read_image(tmp_path / "nan.tif")


def test_float_tiff_out_of_range_names_file_mode_and_range(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 255.0]], np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big\.tif.*float32.*\[0, 255\].*expected float pixels in \[0, 1\]"):
        read_image(tmp_path / "big.tif")


def test_rgb_float_and_16bit_tiff(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[0, 0] = [1.0, 0.0, 0.0]
    rgb[0, 1] = [0.0, 1.0, 0.0]
    rgb[0, 2] = [0.0, 0.0, 1.0]
    rgb[1] = 0.5
    tifffile.imwrite(tmp_path / "rgbf.tif", rgb, photometric="rgb")
    _close(read_image(tmp_path / "rgbf.tif"), _chw(rgb))
    grey = read_image(tmp_path / "rgbf.tif", channels=1)
    _close(grey[0, 0], LUMA)  # pure red, green, blue -> the luma weights
    _close(grey[0, 1], 0.5)
    arr16 = np.array([[[65535, 32768, 1]]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", arr16, photometric="rgb")
    _close(read_image(tmp_path / "rgb16.tif"), _chw(arr16 / 65535.0))  # exact, not 8-bit


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([[0, 51, 255]], np.uint8), np.array([[0.0, 0.2, 1.0]])),
        (np.array([[0, 32768, 65535]], np.uint16), np.array([[0.0, 32768 / 65535, 1.0]])),
        (np.array([[0.0, 0.125, 1.0]], np.float64), np.array([[0.0, 0.125, 1.0]])),
    ],
)
def test_npy_grey(tmp_path: Path, arr: np.ndarray, expected: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", arr)
    _close(read_image(tmp_path / "x.npy", channels=1), _chw(expected))


def test_npy_rgb_to_grey_and_back(tmp_path: Path) -> None:
    arr = np.zeros((1, 2, 3), np.float32)
    arr[0, 0] = [1.0, 1.0, 1.0]
    arr[0, 1] = [0.0, 1.0, 0.0]
    np.save(tmp_path / "rgb.npy", arr)
    _close(read_image(tmp_path / "rgb.npy"), _chw(arr))
    _close(read_image(tmp_path / "rgb.npy", channels=1)[0, 0], [1.0, LUMA[1]])


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((3, 4, 5), np.float32), r"shape \(3, 4, 5\)"),
        (np.array([[0.5, np.inf]], np.float32), "NaN/Inf"),
        (np.array([[-0.5, 0.5]], np.float32), r"\[-0.5, 0.5\]"),
        (np.array([[0, 70000]], np.int64), r"\[0, 70000\].*16-bit"),
        (np.array([[True, False]]), "dtype bool"),
    ],
)
def test_bad_npy_names_the_file(tmp_path: Path, arr: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(ImageReadError, match=rf"bad\.npy.*{message}"):
        read_image(tmp_path / "bad.npy")


def test_palette_rgba_and_1bit_still_convert(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = [200, 100, 50, 0]  # fully transparent: the colour is kept, alpha dropped
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    _close(read_image(tmp_path / "rgba.png"), _chw(rgba[..., :3] / 255.0))
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "bw.png")
    _close(read_image(tmp_path / "bw.png", channels=1), [[[0.0, 1.0]]])
    pal = Image.fromarray(np.array([[255, 0, 0], [0, 0, 255]], np.uint8)[None]).convert("P")
    pal.save(tmp_path / "pal.png")
    _close(read_image(tmp_path / "pal.png")[:, 0, 0], [1.0, 0.0, 0.0], atol=1 / 255)


def test_corrupt_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        read_image(tmp_path / "broken.png")
