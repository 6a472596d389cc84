"""Where a clip's frames come from: frame-rate resampling, clip sampling and window cropping of segments.

Times are in seconds; frame ``i`` of a video at ``fps`` frames per second covers ``[i / fps, (i + 1) / fps)``,
so the frame shown at time ``t`` is ``floor(t * fps)``. Resampling to ``target_fps`` reads the source
frame shown at each target time ``start + k / target_fps``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from visionkit.errors import check_choice

ClipMode = Literal["uniform", "random", "sliding"]
CLIP_MODES = ("uniform", "random", "sliding")


def resampled_length(num_frames: int, fps: float, target_fps: float) -> int:
    """Frames of a ``num_frames``-frame video at ``fps`` once resampled to ``target_fps`` (at least 1)."""
    return max(1, math.floor(num_frames / fps * target_fps + 1e-6))


def source_indices(num_frames: int, fps: float, times: Tensor) -> Tensor:
    """Source frame shown at each time ``times`` (seconds), clamped to ``[0, num_frames - 1]`` (int64)."""
    return torch.floor(times.double() * fps + 1e-6).long().clamp(0, num_frames - 1)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of the sliding windows of ``window`` steps, ``stride`` apart, over ``length`` steps: the last
    window is aligned to the end so the tail is covered; one window at 0 when ``length <= window``."""
    count = max(1, math.ceil((length - window) / stride) + 1)
    return [min(i * stride, max(length - window, 0)) for i in range(count)]


class ClipSampler:
    """Chooses the frames of each clip of a video.

    Args:
        num_frames: frames per clip ``T``.
        fps: frame rate of the clips (frames are resampled from the source rate); ``None``: the source rate.
        mode: ``"uniform"``: one clip per video, ``T`` frames evenly spread over the whole video (``fps`` unused);
            ``"random"``: one clip per video, ``T`` consecutive frames at ``fps`` from a random start
            (drawn from the caller's generator; without one, the centred clip);
            ``"sliding"``: every window of ``T`` frames at ``fps``, ``stride`` frames apart, the last one
            aligned to the video's end so the tail is covered.
        stride: window step in (resampled) frames for ``"sliding"``; ``None``: ``num_frames`` (no overlap).

    A video shorter than a clip repeats its last frame.
    """

    def __init__(self, num_frames: int, fps: float | None = None, mode: ClipMode = "random", stride: int | None = None) -> None:
        check_choice("clip mode", mode, CLIP_MODES)
        if num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive (frames per second), got {fps}")
        stride = num_frames if stride is None else stride
        if stride < 1:
            raise ValueError(f"clip stride must be a positive integer (frames), got {stride}")
        self.num_frames, self.fps, self.mode, self.stride = num_frames, fps, mode, stride

    def clip_fps(self, source_fps: float) -> float:
        """Frame rate of the clips cut from a video at ``source_fps``."""
        return source_fps if self.fps is None else self.fps

    def clip_rate(self, num_frames: int, source_fps: float) -> float:
        """Frames per second of the clips of a ``num_frames``-frame video at ``source_fps``: ``fps`` (or the
        source rate), and for ``"uniform"`` clips ``T`` frames over the video's duration."""
        if self.mode == "uniform":
            return self.num_frames * source_fps / num_frames
        return self.clip_fps(source_fps)

    def num_clips(self, num_frames: int, source_fps: float) -> int:
        """Clips of a ``num_frames``-frame video at ``source_fps``: 1, or the number of sliding windows."""
        if self.mode != "sliding":
            return 1
        length = resampled_length(num_frames, source_fps, self.clip_fps(source_fps))
        return len(window_starts(length, self.num_frames, self.stride))

    def frames(
        self, num_frames: int, source_fps: float, clip: int = 0, generator: torch.Generator | None = None
    ) -> tuple[Tensor, float]:
        """Source frame indices ``(T,)`` int64 of clip ``clip`` and its start time in seconds."""
        fps = self.clip_fps(source_fps)
        if self.mode == "uniform":
            positions = (torch.arange(self.num_frames, dtype=torch.float64) + 0.5) * num_frames / self.num_frames
            return positions.floor().long().clamp(0, num_frames - 1), 0.0
        length = resampled_length(num_frames, source_fps, fps)
        last_start = max(length - self.num_frames, 0)
        if self.mode == "sliding":
            starts = window_starts(length, self.num_frames, self.stride)
            if not 0 <= clip < len(starts):
                raise IndexError(f"clip {clip} out of range for a video of {num_frames} frames")
            start = starts[clip]
        elif generator is None:
            start = last_start // 2
        else:
            start = int(torch.randint(last_start + 1, (), generator=generator))
        times = (start + torch.arange(self.num_frames, dtype=torch.float64)) / fps
        return source_indices(num_frames, source_fps, times), start / fps


def crop_segments(segments: Tensor, labels: Tensor, start: float, end: float) -> tuple[Tensor, Tensor]:
    """The parts of ``segments`` ``(K, 2)`` (seconds) inside the window ``[start, end)``, shifted so the
    window starts at 0, with their ``labels``; segments that do not overlap the window are dropped."""
    if len(segments) == 0:
        return segments.reshape(0, 2).float(), labels.reshape(0).long()
    lo = segments[:, 0].clamp(min=start)
    hi = segments[:, 1].clamp(max=end)
    keep = hi > lo
    return torch.stack([lo[keep], hi[keep]], 1).float() - start, labels[keep].long()
