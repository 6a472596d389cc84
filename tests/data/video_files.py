"""Tiny videos for the data tests: video files of any codec (PyAV), folders of extracted frames, and
frames whose grey level encodes their index (identifiable after lossy coding)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

#: Grey level of frame ``i`` in :func:`moving_frames`: ``LEVEL_BASE + LEVEL_STEP * i`` (mod the range).
LEVEL_BASE, LEVEL_STEP = 16, 7
#: Distinct levels before they repeat (indices ``0 .. LEVELS - 1`` are identifiable).
LEVELS = (240 - LEVEL_BASE) // LEVEL_STEP

#: ``suffix -> (codec, pixel format, encoder options)``: high quality, so decoded pixels are close.
CODECS = {
    ".mp4": ("libx264", "yuv420p", {"crf": "4", "preset": "ultrafast", "g": "8"}),
    ".mkv": ("libx264", "yuv420p", {"crf": "4", "preset": "ultrafast", "g": "8"}),
    ".mov": ("libx264", "yuv420p", {"crf": "4", "preset": "ultrafast", "g": "8"}),
    ".avi": ("mpeg4", "yuv420p", {"qscale": "2", "g": "8"}),
    ".webm": ("libvpx", "yuv420p", {"crf": "4", "b": "2M", "g": "8"}),
}


def write_video(path: str | Path, frames: np.ndarray, fps: float, codec: str | None = None) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB at ``fps`` frames per second into ``path``.

    The codec follows the suffix (:data:`CODECS`: ``.mp4`` libx264 yuv420p crf 4, ``.avi`` mpeg4 qscale 2,
    ``.webm`` libvpx), keyframes every 8 frames so reads exercise seeking; ``codec`` overrides it
    (e.g. ``"mjpeg"`` for an ``.avi``). ``H`` and ``W`` must be even (yuv420p).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    default_codec, pix_fmt, options = CODECS.get(path.suffix.lower(), CODECS[".mp4"])
    if codec is not None and codec != default_codec:
        pix_fmt, options = ("yuvj420p", {"qscale": "2"}) if codec == "mjpeg" else ("yuv420p", {})
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or default_codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: str | Path, frames: np.ndarray, ext: str = ".jpg") -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as ``folder/img_00001<ext>``, ``img_00002<ext>``, ... (JPEG quality 95)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(np.asarray(frames), 1):
        Image.fromarray(frame).save(folder / f"img_{i:05d}{ext}", **({"quality": 95} if ext != ".png" else {}))
    return folder


def moving_frames(num_frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames, flat grey: frame ``i`` has level ``LEVEL_BASE + LEVEL_STEP * i``
    (cycling after :data:`LEVELS` frames), plus a seeded, constant colour tint (up to +-6 levels per channel,
    zero-sum) so the content is not trivially grey. Flat frames keep codec error to about 1-2 levels; recover an index
    with :func:`frame_index`."""
    pair = np.random.default_rng(seed).integers(-3, 4, 2)
    tint = np.array([pair[0], pair[1], -pair.sum()])  # sums to 0: the mean level stays the index's
    levels = LEVEL_BASE + LEVEL_STEP * (np.arange(num_frames) % LEVELS)
    frames = levels[:, None, None, None] + tint[None, None, None, :]
    return np.broadcast_to(frames, (num_frames, size, size, 3)).astype(np.uint8).copy()


def frame_index(frame: np.ndarray | object) -> int:
    """The index a :func:`moving_frames` frame encodes: its mean level, given as float ``(3, H, W)`` in [0, 1]
    (a decoded frame) or ``(H, W, 3)`` uint8, rounded to the nearest step."""
    import torch

    if isinstance(frame, torch.Tensor):
        mean = float(frame.float().mean()) * 255
    else:
        mean = float(np.asarray(frame, dtype=np.float64).mean())
    return round((mean - LEVEL_BASE) / LEVEL_STEP)


def write_video_classes(
    root: str | Path, videos: dict[str, list[str]], num_frames: int = 20, fps: float = 10, size: int = 32
) -> Path:
    """Write ``root/<class>/<name>`` for every ``{class: [name, ...]}``: a name with a video suffix becomes a
    video file at ``fps``, a name without one a folder of ``.jpg`` frames; frames from :func:`moving_frames`
    (seeded by the video's position). A class with an empty list gets an empty folder."""
    root = Path(root)
    seed = 0
    for name, files in videos.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            frames = moving_frames(num_frames, size, seed)
            seed += 1
            if Path(file).suffix:
                write_video(root / name / file, frames, fps)
            else:
                write_frame_folder(root / name / file, frames)
    return root


def textured_frames(num_frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(T, size, size, 3)`` uint8: ``num_frames`` copies of one seeded random-noise frame (so crops and
    flips show, and every frame of an augmented clip must stay equal)."""
    frame = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.repeat(frame[None], num_frames, axis=0)
