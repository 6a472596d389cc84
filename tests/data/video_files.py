"""Tiny videos for the data tests: video files of any codec (PyAV), folders of extracted frames, and
frames whose grey level encodes their index (identifiable after lossy coding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionkit.data.video_writer import CODECS, write_frame_folder
from visionkit.data.video_writer import write_video as library_write_video

__all__ = ["CODECS", "frame_index", "moving_frames", "textured_frames", "write_frame_folder", "write_video", "write_video_classes"]

#: Grey level of frame ``i`` in :func:`moving_frames`: ``LEVEL_BASE + LEVEL_STEP * i`` (mod the range).
LEVEL_BASE, LEVEL_STEP = 16, 7
#: Distinct levels before they repeat (indices ``0 .. LEVELS - 1`` are identifiable).
LEVELS = (240 - LEVEL_BASE) // LEVEL_STEP

def write_video(path: str | Path, frames: np.ndarray, fps: float, codec: str | None = None) -> Path:
    """Encode test frames at high quality (x264 crf 4, mpeg4 qscale ~1) with a keyframe every 8 frames, so
    decoded pixels stay within 1-2 levels and reads exercise seeking."""
    return library_write_video(path, frames, fps, codec=codec, quality=4, keyframe_interval=8)


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
