"""Write frames as a video file (PyAV) or as a folder of extracted frames (``img_00001.jpg`` ...)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

#: ``suffix -> (codec, pixel format)`` of :func:`write_video`.
CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".webm": ("libvpx", "yuv420p"),
}


def write_video(
    path: str | Path, frames: np.ndarray, fps: float, codec: str | None = None, quality: int = 18,
    keyframe_interval: int | None = None,
) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB at ``fps`` frames per second into ``path``.

    Args:
        path: output file; the suffix picks the codec (:data:`CODECS`) unless ``codec`` is given
            (``"mjpeg"`` for a motion-JPEG ``.avi``).
        frames: RGB frames; ``H`` and ``W`` must be even (yuv420p).
        fps: frame rate.
        quality: x264/VP8 constant rate factor, or mpeg4/mjpeg ``qscale`` (lower is better; 0-51).
        keyframe_interval: frames between keyframes (``None``: the encoder's default).
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even for yuv420p video, got {frames.shape[1:3]}")
    default_codec, pix_fmt = CODECS.get(path.suffix.lower(), CODECS[".mp4"])
    codec = codec or default_codec
    if codec in ("mpeg4", "mjpeg"):
        options = {"qscale": str(max(quality // 8, 1))}
        pix_fmt = "yuvj420p" if codec == "mjpeg" else pix_fmt
    else:
        options = {"crf": str(quality)} | ({"preset": "ultrafast"} if codec == "libx264" else {"b": "2M"})
    if keyframe_interval is not None:
        options["g"] = str(keyframe_interval)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: str | Path, frames: np.ndarray, ext: str = ".jpg", quality: int = 95) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as ``folder/img_00001<ext>``, ``img_00002<ext>``, ...
    (JPEG ``quality`` for ``.jpg``/``.jpeg``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options = {} if ext.lower() == ".png" else {"quality": quality}
    for i, frame in enumerate(np.asarray(frames), 1):
        Image.fromarray(frame).save(folder / f"img_{i:05d}{ext}", **options)
    return folder
