"""Video sources: frame count, frame rate and random access to the frames of a video file or of a
folder of extracted frames.

Video files are decoded with PyAV: torchvision 0.29 removed its video decoding, torchcodec needs the
system's FFmpeg libraries, and PyAV's wheels bundle FFmpeg (H.264, MPEG-4, VP8/VP9, MJPEG, ...).

:class:`VideoFile` (one container per :meth:`~VideoSource.read`, closed on return, so nothing open is
shared with forked DataLoader workers):

* **Frame count**: the stream's ``frames`` (MP4's sample table, AVI's index) when it is positive and
  agrees with the stream's duration (within one frame and 1 %); otherwise (Matroska/WebM carry no count)
  the video packets are counted by demuxing the file once, without decoding.
* **Frame rate**: the stream's ``average_rate``, else its ``guessed_rate``.
* **Reading**: the wanted indices are sorted; the container seeks once, to the keyframe at or before the
  first wanted frame (``backward=True``, by its pts in the stream's time base, rounded up), and
  decodes forward until the last wanted frame. Decoded frames are mapped to indices by timestamp,
  ``index = round((pts - start_pts) * time_base * fps)``, not by counting, so seeking and B-frame
  reordering cannot shift them (a frame without pts takes the previous index + 1). Index ``i`` gets the
  last decoded frame whose index is ``<= i`` (the frame on screen at time ``i / fps``), so a variable
  frame rate or a dropped frame repeats the previous frame. If a seek lands after the first wanted frame,
  the read restarts from the file's start. Indices past the last decodable frame (containers may
  over-report the count) get the last frame; a decoder error raises :class:`VideoReadError`.

:class:`FrameFolder`: ``<folder>/img_00001.jpg``, ``img_00002.jpg``, ... (1-based, 5 digits, one of
:data:`FRAME_EXTENSIONS`), read with Pillow.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.data.errors import VideoReadError

__all__ = ["FRAME_EXTENSIONS", "VIDEO_EXTENSIONS", "FrameFolder", "VideoFile", "VideoSource", "open_video"]

#: File extensions read as video files (case-insensitive).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
#: File extensions of extracted frames in a frame folder (case-insensitive).
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Name of frame ``i`` (1-based) in a frame folder, without the extension.
FRAME_NAME = "img_{:05d}"
_FRAME_RE = re.compile(r"img_(\d{5})")


def _check_indices(indices: Tensor | Any, path: Path) -> Tensor:
    """``indices`` as a non-empty 1-D int64 tensor of non-negative frame indices."""
    indices = torch.as_tensor(indices)
    if indices.ndim != 1 or len(indices) == 0 or indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"frame indices of '{path}' must be a non-empty 1-D integer tensor, got {indices!r}")
    if bool((indices < 0).any()):
        raise ValueError(f"frame indices of '{path}' must be >= 0 (0-based), got {indices.tolist()}")
    return indices.long()


def _to_clip(frames: dict[int, np.ndarray], indices: Tensor, path: Path) -> Tensor:
    """Stack the decoded ``(H, W, 3)`` uint8 ``frames`` in the order of ``indices`` to float32 ``(T, 3, H, W)``."""
    order = sorted(frames)
    shapes = {frames[i].shape for i in order}
    if len(shapes) > 1:
        raise VideoReadError(path, f"frame size changes within the video ({sorted(shapes)}); expected one size")
    stacked = torch.from_numpy(np.stack([frames[i] for i in order]))
    position = {f: k for k, f in enumerate(order)}
    picks = torch.tensor([position[int(i)] for i in indices.tolist()])
    return stacked[picks].permute(0, 3, 1, 2).float().div_(255)


class VideoSource(ABC):
    """One video: its frame count, frame rate and random access to its frames.

    Attributes:
        path: the video file or frames folder.
        num_frames: frames in the video.
        fps: frames per second.
    """

    path: Path
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        """Length of the video in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps

    @abstractmethod
    def read(self, indices: Tensor) -> Tensor:
        """Frames at the 0-based ``indices`` ``(T,)`` (any order, repeats allowed) as float32 ``(T, 3, H, W)``
        in [0, 1]. Indices past the last frame read the last frame.

        Raises:
            VideoReadError: the frames cannot be decoded.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.path}', num_frames={self.num_frames}, fps={self.fps:g})"


class VideoFile(VideoSource):
    """A video file decoded with PyAV (see the module docstring for counting, seeking and timestamps).

    The file is probed in ``__init__`` (container, video stream, frame rate, frame count); no container
    stays open between calls, so the object can be copied into DataLoader worker processes.

    Args:
        path: the video file.

    Raises:
        VideoReadError: the file is missing, empty, not a readable container, or has no video stream,
            no frame rate or no frames.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        expected = f"expected a video file ({', '.join(VIDEO_EXTENSIONS)}) with a video stream"
        if not self.path.is_file():
            reason = "is a folder, not a file" if self.path.is_dir() else "does not exist"
            raise VideoReadError(self.path, f"file {reason}; {expected}")
        if self.path.stat().st_size == 0:
            raise VideoReadError(self.path, f"file is empty (0 bytes); {expected}")
        import av

        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    kinds = sorted({s.type for s in container.streams}) or ["none"]
                    raise VideoReadError(self.path, f"no video stream (streams: {', '.join(kinds)}); {expected}")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                if not rate or rate <= 0:
                    raise VideoReadError(self.path, "the video stream has no frame rate; expected a constant-rate video")
                self._rate = Fraction(rate)
                self._time_base = Fraction(stream.time_base)
                self._start_pts = int(stream.start_time or 0)
                num_frames = self._metadata_frames(stream)
                counted = num_frames is None
                if counted:
                    num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        except VideoReadError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise VideoReadError(self.path, f"cannot be opened as a video container ({err}); {expected}") from err
        if num_frames < 1:
            raise VideoReadError(self.path, f"the video stream holds no frames; {expected}")
        self.num_frames, self.fps = int(num_frames), float(self._rate)
        #: ``"metadata"`` (the stream's frame count) or ``"packets"`` (counted by demuxing).
        self.frame_count_source = "packets" if counted else "metadata"
        #: frames the last :meth:`read` decoded in this process (how far seeking saved decoding).
        self.frames_decoded = 0

    def _metadata_frames(self, stream: Any) -> int | None:
        """The stream's frame count when it is positive and agrees with its duration, else ``None``."""
        frames = int(stream.frames or 0)
        if frames <= 0:
            return None
        if stream.duration:
            expected = float(stream.duration * self._time_base * self._rate)
            if abs(frames - expected) > 1 + 0.01 * expected:
                return None
        return frames

    def _index(self, pts: int) -> int:
        """Frame index of a presentation timestamp (stream time base)."""
        return math.floor((pts - self._start_pts) * self._time_base * self._rate + Fraction(1, 2))

    def read(self, indices: Tensor) -> Tensor:
        indices = _check_indices(indices, self.path).clamp(max=self.num_frames - 1)
        wanted = sorted(set(indices.tolist()))
        frames = self._decode(wanted, seek=wanted[0] > 0)
        if frames is None:  # the seek landed after the first wanted frame: decode from the start
            frames = self._decode(wanted, seek=False)
        return _to_clip(frames, indices, self.path)

    def _decode(self, wanted: list[int], seek: bool) -> dict[int, np.ndarray] | None:
        """Decoded frames ``{index: (H, W, 3) uint8}`` for the sorted ``wanted`` indices, or ``None`` when a
        seek overshot the first of them."""
        import av

        frames: dict[int, np.ndarray] = {}
        last = -1
        self.frames_decoded = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                if seek:
                    # ceil: the first wanted frame's pts, however the muxer rounded it, is <= target
                    target = self._start_pts + math.ceil(wanted[0] / (self._rate * self._time_base))
                    container.seek(target, backward=True, any_frame=False, stream=stream)
                previous: Any = None  # the last decoded frame, shown until the next one starts
                position = 0  # next entry of ``wanted`` to fill
                for frame in container.decode(stream):
                    self.frames_decoded += 1
                    index = self._index(frame.pts) if frame.pts is not None else last + 1
                    if previous is None and index > wanted[0]:
                        if seek:
                            return None
                        previous = frame  # the first frame starts late: it stands in for the ones before it
                    while position < len(wanted) and wanted[position] < index:
                        frames[wanted[position]] = previous.to_ndarray(format="rgb24")
                        position += 1
                    previous, last = frame, index
                    if position == len(wanted) or index >= wanted[-1]:
                        break
                if previous is None:
                    raise VideoReadError(self.path, f"no decodable frame at or after frame {wanted[0]}")
                rgb = previous.to_ndarray(format="rgb24")
                for w in wanted[position:]:  # the last wanted frames, or past the last decodable frame
                    frames[w] = rgb
        except VideoReadError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as err:
            where = f"after frame {last}" if last >= 0 else "at the start"
            raise VideoReadError(
                self.path, f"decode error {where} while reading frames {wanted[0]}-{wanted[-1]} ({err})"
            ) from err
        return frames


class FrameFolder(VideoSource):
    """A folder of extracted frames ``img_00001.jpg``, ``img_00002.jpg``, ... (1-based, 5 digits).

    Frame files must all share one extension of :data:`FRAME_EXTENSIONS` and be numbered without gaps;
    hidden files and files with other extensions are ignored. The folder is listed in ``__init__``; the
    images are decoded by :meth:`read`.

    Args:
        path: the frames folder.
        fps: frame rate the frames were extracted at (frames per second).

    Raises:
        VideoReadError: the folder is missing or holds no frames, a frame file is misnamed, the
            extensions are mixed, or the numbering has a gap.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if fps is None or not fps > 0:
            raise ValueError(f"fps of frames folder '{self.path}' must be positive (frames per second), got {fps}")
        expected = f"expected frames {FRAME_NAME.format(1)}.jpg, {FRAME_NAME.format(2)}.jpg, ... ({'/'.join(FRAME_EXTENSIONS)})"
        if not self.path.is_dir():
            raise VideoReadError(self.path, f"frames folder {'is not a folder' if self.path.exists() else 'does not exist'}; {expected}")
        numbers: dict[int, str] = {}
        suffixes: set[str] = set()
        for file in sorted(self.path.iterdir()):
            if file.name.startswith(".") or file.suffix.lower() not in FRAME_EXTENSIONS:
                continue
            match = _FRAME_RE.fullmatch(file.stem)
            if match is None or int(match.group(1)) == 0:
                raise VideoReadError(self.path, f"frame file '{file.name}' is misnamed; {expected}")
            numbers[int(match.group(1))] = file.name
            suffixes.add(file.suffix)
        if not numbers:
            raise VideoReadError(self.path, f"frames folder holds no frames; {expected}")
        if len(suffixes) > 1:
            raise VideoReadError(self.path, f"frames folder mixes extensions {sorted(suffixes)}; expected one extension")
        (self.suffix,) = suffixes
        missing = next((i for i in range(1, len(numbers) + 1) if i not in numbers), None)
        if missing is not None:
            name = FRAME_NAME.format(missing) + self.suffix
            raise VideoReadError(
                self.path, f"frame {name} is missing (frames up to {numbers[max(numbers)]} exist); expected no gaps"
            )
        self.num_frames, self.fps = len(numbers), float(fps)

    def frame_path(self, index: int) -> Path:
        """File of the 0-based frame ``index``."""
        return self.path / (FRAME_NAME.format(index + 1) + self.suffix)

    def read(self, indices: Tensor) -> Tensor:
        from PIL import Image

        indices = _check_indices(indices, self.path).clamp(max=self.num_frames - 1)
        frames: dict[int, np.ndarray] = {}
        for i in sorted(set(indices.tolist())):
            file = self.frame_path(i)
            try:
                with Image.open(file) as image:
                    frames[i] = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as err:
                raise VideoReadError(self.path, f"frame {file.name} cannot be decoded ({err})") from err
        return _to_clip(frames, indices, self.path)


def open_video(path: str | Path, fps: float | None = None) -> VideoSource:
    """The video at ``path``: a :class:`FrameFolder` for a folder (``fps`` required), a :class:`VideoFile`
    for a file (``fps`` must be ``None``: a file carries its own rate).

    Raises:
        ValueError: ``fps`` missing for a folder, or given for a file.
        VideoReadError: the file or folder is unreadable (see :class:`VideoFile`, :class:`FrameFolder`).
    """
    path = Path(path)
    if path.is_dir():
        if fps is None:
            raise ValueError(f"'{path}' is a frames folder: pass its fps (the rate the frames were extracted at)")
        return FrameFolder(path, fps)
    if fps is not None:
        raise ValueError(f"'{path}' is a video file, which carries its own frame rate: pass fps=None, got {fps}")
    return VideoFile(path)
