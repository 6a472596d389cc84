"""VideoFolder: clip classification over class folders of videos (``root/<class>/<video>``), where a
video is a file (:data:`~visionkit.data.datasets.video_sources.VIDEO_EXTENSIONS`) or a folder of
extracted frames (``root/<class>/<video_id>/img_00001.jpg``, ...)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data.clips import ClipSampler
from visionkit.data.datasets.class_folders import align_classes, scan_class_folders
from visionkit.data.datasets.video_base import VideoDataset, sample_generator
from visionkit.data.datasets.video_sources import VIDEO_EXTENSIONS, FrameFolder, VideoSource, open_video
from visionkit.data.samplers import split_key
from visionkit.data.transforms import ClipAugment, check_channels, prepare_frames

__all__ = ["VIDEO_LAYOUT", "VideoFolder", "scan_video_folder"]

VIDEO_LAYOUT = (
    "<root>/<class_name>/<video>.{mp4,avi,webm,mkv,mov} or <root>/<class_name>/<video_id>/img_00001.jpg ... "
    "(or <root>/{train,val,test}/<class_name>/...)"
)


def scan_video_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names) and ``(path, class_index)`` of every video under ``root``.

    A video is a file of a class folder with an extension in :data:`VIDEO_EXTENSIONS` (case-insensitive)
    or a sub-folder of a class folder (a folder of extracted frames; it is checked when opened). Hidden
    files and folders (names starting with ``.``) and files with other extensions are ignored. A class
    folder without videos stays in the class list (label indices do not depend on which folders hold
    files) and a warning names it.

    Raises:
        DatasetNotFoundError: ``root`` is missing, has no class folders, or holds no videos.
    """
    what = f"videos ({', '.join(VIDEO_EXTENSIONS)} files or frame folders)"
    return scan_class_folders(root, "VideoFolder", VIDEO_LAYOUT, list_videos, what)


def list_videos(folder: Path) -> list[Path]:
    """Videos of a class folder (sorted): files with an extension in :data:`VIDEO_EXTENSIONS` and
    sub-folders (frame folders); hidden entries are skipped."""
    return [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and (p.is_dir() or (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
    ]


class VideoFolder(VideoDataset):
    """Clips of videos in class folders, for clip classification.

    Every video is opened (probed) in ``__init__`` (:func:`~visionkit.data.datasets.video_sources.open_video`),
    so a missing, empty or corrupt file, or a frame folder with a gap, fails before training starts.

    Args:
        root: folder with one sub-folder per class (see :func:`scan_video_folder`).
        num_frames: frames per clip ``T``.
        fps: clip frame rate (frames are resampled from the source rate); ``None``: the source rate.
        clip_mode: ``"random"`` (one clip per video at a random start in training, the centred clip at
            evaluation), ``"uniform"`` (``T`` frames spread over the whole video) or ``"sliding"`` (every
            window, each an item), see :class:`~visionkit.data.clips.ClipSampler`.
        clip_stride: window step for ``"sliding"`` in clip frames (``None``: ``num_frames``, no overlap).
        frames_fps: frame rate of the frame folders (frames per second they were extracted at).
        image_size: frames are resized (squashed) to ``image_size`` x ``image_size``.
        channels: 3 (RGB) or 1 (grey, by the ITU-R 601-2 luma weights).
        augment: at training time (keys tagged with an epoch) apply
            :class:`~visionkit.data.transforms.ClipAugment` (one random resized crop and flip per clip).
        seed: seed of the clip positions and augmentations (with the item's index and epoch).
        indices: subset of the scanned videos (``None``: all).
        classes: the class list to use (e.g. the train split's), so splits agree on label indices.

    Items (keys: an index, or ``(index, epoch)`` from :class:`~visionkit.data.samplers.EpochTaggedSampler`):
    ``video`` float32 ``(T, channels, image_size, image_size)`` in [0, 1], ``label`` int64, ``index``
    int64, ``path`` str (the video file or frames folder), ``video_id`` str (file stem or folder name),
    ``clip_start`` float (seconds from the video's start to the clip's first frame), ``fps`` float (the
    clip's frame rate; for ``"uniform"``, ``T`` / the video's duration). Randomness comes only from
    :func:`~visionkit.data.datasets.video_base.sample_generator` ``(seed, index, epoch)``: none without an epoch.

    The dataset has one item per clip: one per video, or each video's number of sliding windows.

    Raises:
        DatasetNotFoundError: missing or empty root, or class folders that ``classes`` lacks.
        VideoReadError: an unreadable video file or frames folder.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 8,
        fps: float | None = None,
        clip_mode: str = "random",
        clip_stride: int | None = None,
        frames_fps: float = 30.0,
        image_size: int = 112,
        channels: int = 3,
        augment: bool = False,
        seed: int = 0,
        indices: list[int] | np.ndarray | None = None,
        classes: list[str] | None = None,
    ) -> None:
        check_channels(channels)
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer (pixels), got {image_size}")
        if not frames_fps > 0:
            raise ValueError(f"frames_fps must be positive (frames per second of the frame folders), got {frames_fps}")
        self.sampler = ClipSampler(num_frames, fps, clip_mode, clip_stride)
        found, items = scan_video_folder(root)
        self.classes, items = align_classes(found, items, classes, "VideoFolder", root, VIDEO_LAYOUT)
        self.root, self.frames_fps, self.image_size, self.in_channels = Path(root), float(frames_fps), image_size, channels
        self.augment, self.seed = augment, seed
        self.clip_augment = ClipAugment(image_size)
        items = items if indices is None else [items[int(i)] for i in indices]
        self._set_videos(items, [open_video(p, self.frames_fps if p.is_dir() else None) for p, _ in items])

    def _set_videos(self, items: list[tuple[Path, int]], sources: list[VideoSource]) -> None:
        """Keep ``items`` and their opened ``sources`` and build the item -> (video, clip) table."""
        self.items, self.sources = items, sources
        counts = [self.sampler.num_clips(s.num_frames, s.fps) for s in sources]
        #: ``offsets[v]``: the first item of video ``v`` (``offsets[-1]``: the dataset's length).
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    def subset(self, indices: list[int] | np.ndarray, augment: bool | None = None) -> VideoFolder:
        """The videos ``indices`` of this dataset (opened sources are reused, nothing is probed again),
        with ``augment`` changed when given."""
        sub = copy.copy(self)
        sub._set_videos([self.items[int(i)] for i in indices], [self.sources[int(i)] for i in indices])
        if augment is not None:
            sub.augment = augment
        return sub

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(video, clip)`` of item ``index``: the video's position in :attr:`items` and the clip's number in it."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for a VideoFolder of {len(self)} clips")
        video = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return video, index - int(self.offsets[video])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = split_key(key)
        video, clip = self.locate(index)
        source, (path, label) = self.sources[video], self.items[video]
        generator = sample_generator(self.seed, index, epoch)
        indices, start = self.sampler.frames(source.num_frames, source.fps, clip, generator)
        augment = self.clip_augment if self.augment else None
        frames = prepare_frames(source.read(indices), self.in_channels, self.image_size, augment, generator)
        fps = self.sampler.clip_rate(source.num_frames, source.fps)
        return {
            "video": frames,
            "label": torch.tensor(label, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(path),
            "video_id": path.name if isinstance(source, FrameFolder) else path.stem,
            "clip_start": float(start),
            "fps": float(fps),
        }
