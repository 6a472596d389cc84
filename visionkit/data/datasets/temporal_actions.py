"""Temporal action localization (TAL) datasets: annotated videos cut into clips, or per-snippet feature
sequences, each sample carrying its ground-truth segments in seconds from the sample's start.

Both follow the localization conventions of :mod:`visionkit.data.datasets.video_base` (``segments`` float32
``(K, 2)`` seconds from the sample's start ``clip_start``, ``segment_labels`` int64 ``(K,)``, ``fps``,
``duration`` and ``clip_start`` floats in seconds, ``video_id``, ``path``, ``index``), with one difference:

* :class:`TemporalActionVideos` samples hold ``video`` float32 ``(T, C, S, S)`` in [0, 1];
* :class:`TemporalActionFeatures` samples hold ``features`` float32 ``(L, D)`` instead of ``video``:
  ``L`` feature steps of dimension ``D``; ``fps`` is then feature steps per second.

Segments are those of :class:`~visionkit.data.datasets.tal_annotations.VideoAnnotation` cropped to the
sample's time span ``[clip_start, clip_start + duration)`` and shifted to start at 0
(:func:`~visionkit.data.clips.crop_segments`); segments outside the span are dropped, so ``K`` may be 0.

Time of feature steps. Feature files (``<features_root>/<video_id>.npy`` or ``.pt``, ``(T, D)``, found and
read by :mod:`visionkit.data.datasets.snippet_features`) hold one step every ``1 / feature_fps`` seconds;
step ``t`` is centred at ``feature_offset + t / feature_fps`` seconds from the video's start and stands for
the ``1 / feature_fps`` seconds around its centre. Feature samples carry ``step_offset``: seconds from
``clip_start`` to the centre of the sample's step 0, so the sample's step ``j`` is centred at
``step_offset + j / fps`` seconds in the sample's time (the time of ``segments``):

* whole sequences (``window=None``): the sample is the whole annotated video: ``clip_start = 0``,
  ``duration`` = the annotated duration, segments in seconds from the video's start (cropped to
  ``[0, duration]`` only), ``step_offset = feature_offset``;
* windows of steps ``[s, s + L)``: like a clip of ``L`` frames, the sample spans the ``L`` steps' own
  seconds, ``[feature_offset + (s - 0.5) / feature_fps, feature_offset + (s + L - 0.5) / feature_fps)``:
  ``clip_start = feature_offset + (s - 0.5) / feature_fps`` (negative for ``s = 0`` when
  ``feature_offset < 0.5 / feature_fps``), ``duration = L / feature_fps``, ``step_offset = 0.5 / feature_fps``
  (step ``j`` covers ``[j, j + 1) / feature_fps``, as frame ``j`` of a video clip does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from visionkit.data.clips import ClipMode, ClipSampler, crop_segments, window_starts
from visionkit.data.datasets.snippet_features import (
    FEATURE_LAYOUT,
    _listing,
    feature_shape,
    find_feature_files,
    read_features,
)
from visionkit.data.datasets.tal_annotations import VideoAnnotation, subset_annotations
from visionkit.data.datasets.video_base import VideoDataset, sample_generator
from visionkit.data.datasets.video_sources import VIDEO_EXTENSIONS, VideoSource, open_video
from visionkit.data.errors import DatasetNotFoundError, FeatureReadError
from visionkit.data.samplers import split_key
from visionkit.data.transforms import ClipAugment, check_channels, prepare_frames

__all__ = [
    "VIDEO_LAYOUT",
    "TemporalActionFeatures",
    "TemporalActionVideos",
    "check_clip_args",
    "check_feature_args",
    "find_video_files",
]

VIDEO_LAYOUT = (
    f"<video_root>/<video_id>{{{','.join(VIDEO_EXTENSIONS)}}} or a frames folder <video_root>/<video_id>/"
)


def find_video_files(
    root: str | Path, video_ids: list[str], name: str = "TemporalActionVideos"
) -> dict[str, Path]:
    """The video file or frames folder of each id under ``root``: ``<id><ext>`` for ``ext`` in
    ``VIDEO_EXTENSIONS`` (any case, in that order of preference), else the folder ``<id>/``.

    Raises:
        DatasetNotFoundError: ``root`` is missing, or an id has neither (the message names the id and
            the paths looked for).
    """
    root = Path(root)
    files, folders = _listing(root, name, VIDEO_LAYOUT)
    found: dict[str, Path] = {}
    for video_id in video_ids:
        by_ext = {p.suffix.lower(): p for p in files.get(video_id, [])}
        path = next((by_ext[e] for e in VIDEO_EXTENSIONS if e in by_ext), None)
        if path is None and video_id in folders:
            path = root / video_id
        if path is None:
            tried = f"{root / video_id}{{{','.join(VIDEO_EXTENSIONS)}}} or the folder {root / video_id}/"
            raise DatasetNotFoundError(
                name, root, VIDEO_LAYOUT, f"has no video for video id '{video_id}' (looked for {tried})"
            )
        found[video_id] = path
    return found


def _check_positive(name: str, value: float | None, unit: str) -> None:
    if value is None or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be positive ({unit}), got {value}")


def check_clip_args(
    num_frames: int, fps: float | None, clip_mode: ClipMode, clip_stride: int | None, frames_fps: float
) -> ClipSampler:
    """The :class:`~visionkit.data.clips.ClipSampler` of :class:`TemporalActionVideos`' clip arguments,
    checked (with ``frames_fps``) without touching any file.

    Raises:
        ValueError: a bad clip mode, ``num_frames`` or ``clip_stride`` < 1, or ``fps``/``frames_fps`` <= 0.
    """
    _check_positive("frames_fps", frames_fps, "frames per second of frames folders")
    return ClipSampler(num_frames, fps, clip_mode, clip_stride)


def check_feature_args(
    feature_fps: float, feature_offset: float, window: int | None, window_stride: int | None
) -> int | None:
    """Check :class:`TemporalActionFeatures`' sequence arguments; returns the window stride
    (``window_stride``, else ``window``; ``None`` for whole sequences).

    Raises:
        ValueError: ``feature_fps`` <= 0, a non-finite ``feature_offset``, ``window`` < 1, or a
            ``window_stride`` < 1 or without a ``window``.
    """
    _check_positive("feature_fps", feature_fps, "feature steps per second")
    if not math.isfinite(feature_offset):
        raise ValueError(f"feature_offset must be a finite number of seconds, got {feature_offset}")
    if window is not None and (isinstance(window, bool) or window < 1):
        raise ValueError(f"window must be a positive number of feature steps, got {window}")
    if window_stride is not None and (window is None or isinstance(window_stride, bool) or window_stride < 1):
        raise ValueError(
            f"window_stride must be a positive number of feature steps with a window, "
            f"got {window_stride} (window {window})"
        )
    return window_stride if window_stride is not None else window


class _TemporalActionBase(VideoDataset):
    """Shared by the TAL datasets: the annotated videos of one subset and the item bookkeeping."""

    name = "TemporalActionDataset"
    videos: list[VideoAnnotation]
    paths: list[Path]
    items: list[tuple[int, int]]

    def _select(
        self, annotations: dict[str, VideoAnnotation], classes: list[str], subset: str | None, root: Path
    ) -> None:
        self.classes = list(classes)
        self.subset = subset
        self.videos = list(subset_annotations(annotations, subset).values())
        if not self.videos:
            what = "no videos" if subset is None else f"no videos of subset '{subset}'"
            raise DatasetNotFoundError(
                self.name, root, self._layout(), f"is not read: the annotations hold {what}"
            )

    def _layout(self) -> str:
        return VIDEO_LAYOUT

    def __len__(self) -> int:
        return len(self.items)

    def _targets(self, video: VideoAnnotation, clip_start: float, duration: float) -> tuple[Tensor, Tensor]:
        return crop_segments(video.segments, video.labels, clip_start, clip_start + duration)


class TemporalActionVideos(_TemporalActionBase):
    """Annotated videos (files or frames folders) cut into clips for temporal action localization.

    Each annotated video of ``subset`` is ``<video_root>/<video_id>.mp4`` (or another extension of
    ``VIDEO_EXTENSIONS``) or a folder of extracted frames ``<video_root>/<video_id>/img_00001.jpg, ...``
    read at ``frames_fps``. Clips (see :class:`~visionkit.data.clips.ClipSampler`):

    * ``"sliding"``: every window of ``num_frames`` frames at ``fps``, ``clip_stride`` frames apart (one item
      each);
    * ``"uniform"``: one item per video, the whole video squeezed into ``num_frames`` frames (ActivityNet
      style), so the item's ``fps`` is ``num_frames / video duration``;
    * ``"random"``: one item per video, a window at a random start drawn from ``(seed, index, epoch)``
      (training keys ``(index, epoch)``); with a plain index, the centred window.

    Every annotated video of ``subset`` is opened (probed: frame count and rate) once at construction,
    whatever the mode, so an empty or corrupt file or a frames folder with a gap fails there, in one line;
    the opened sources are kept (:attr:`sources`) and read by ``__getitem__``.

    Items: ``video`` float32 ``(num_frames, channels, image_size, image_size)`` in [0, 1], ``segments``
    float32 ``(K, 2)`` seconds from the clip's first frame (cropped to the clip), ``segment_labels`` int64
    ``(K,)``, ``fps`` (clip frames per second), ``duration`` (``num_frames / fps`` seconds), ``clip_start``
    (seconds from the video's start), ``video_id``, ``path`` and ``index`` int64.

    Args:
        annotations: ``{video_id: VideoAnnotation}`` (from
            :func:`~visionkit.data.datasets.tal_annotations.read_activitynet_json`).
        classes: the class names the labels index.
        video_root: folder of the videos.
        num_frames: frames per clip.
        fps: clip frame rate (frames are resampled); ``None``: each video's own rate. Unused by ``"uniform"``.
        clip_mode: ``"sliding"``, ``"uniform"`` or ``"random"``.
        clip_stride: sliding-window step in clip frames; ``None``: ``num_frames`` (no overlap).
        frames_fps: frame rate of frames folders (video files carry their own).
        image_size: frame side in pixels (frames are squashed, or randomly cropped with ``augment``).
        channels: 3 (RGB) or 1 (grey).
        seed: seed of the random clip starts and augmentations.
        augment: one random resized crop and flip per clip (:class:`~visionkit.data.transforms.ClipAugment`),
            drawn from ``(seed, index, epoch)``; only for keys with an epoch (training).
        subset: only the videos of this subset; ``None``: every video of ``annotations``. Videos of other
            subsets are never looked for on disk.

    Raises:
        DatasetNotFoundError: ``video_root`` is missing, no video of ``subset`` is annotated, or an annotated
            video has no file or folder (naming the video id and the paths looked for).
        VideoReadError: a video file or frames folder that cannot be opened (at construction, any mode).
        ValueError: a bad clip argument (see :func:`check_clip_args`), ``image_size`` < 1.
        ConfigValueError: ``channels`` not 1 or 3.
    """

    name = "TemporalActionVideos"

    def __init__(
        self,
        annotations: dict[str, VideoAnnotation],
        classes: list[str],
        video_root: str | Path,
        num_frames: int = 64,
        fps: float | None = None,
        clip_mode: ClipMode = "sliding",
        clip_stride: int | None = None,
        frames_fps: float = 30.0,
        image_size: int = 112,
        channels: int = 3,
        seed: int = 0,
        augment: bool = False,
        subset: str | None = None,
    ) -> None:
        check_channels(channels)
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer (pixels), got {image_size}")
        self.sampler = check_clip_args(num_frames, fps, clip_mode, clip_stride, frames_fps)
        self.root = Path(video_root)
        self._select(annotations, classes, subset, self.root)
        found = find_video_files(self.root, [v.video_id for v in self.videos], self.name)
        self.paths = [found[v.video_id] for v in self.videos]
        self.frames_fps, self.image_size, self.in_channels, self.seed = (
            float(frames_fps),
            image_size,
            channels,
            seed,
        )
        self.augment = ClipAugment(image_size) if augment else None
        #: the opened video of each entry of :attr:`videos` (probed once, here; no file stays open).
        self.sources: list[VideoSource] = [
            open_video(path, fps=self.frames_fps if path.is_dir() else None) for path in self.paths
        ]
        self.items = []
        for v, source in enumerate(self.sources):
            self.items += [(v, c) for c in range(self.sampler.num_clips(source.num_frames, source.fps))]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = split_key(key)
        v, clip = self.items[index]
        video, path, source = self.videos[v], self.paths[v], self.sources[v]
        generator = sample_generator(self.seed, index, epoch)
        frames, clip_start = self.sampler.frames(source.num_frames, source.fps, clip, generator)
        fps = self.sampler.clip_rate(source.num_frames, source.fps)
        pixels = prepare_frames(source.read(frames), self.in_channels, self.image_size, self.augment, generator)
        duration = self.sampler.num_frames / fps
        segments, labels = self._targets(video, clip_start, duration)
        return {
            "video": pixels.float().contiguous(),
            "segments": segments,
            "segment_labels": labels,
            "fps": float(fps),
            "duration": float(duration),
            "clip_start": float(clip_start),
            "video_id": video.video_id,
            "path": str(path),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class TemporalActionFeatures(_TemporalActionBase):
    """Per-snippet feature sequences of annotated videos for temporal action localization.

    Each annotated video of ``subset`` has ``<features_root>/<video_id>.npy`` or ``.pt`` holding float
    ``(T, D)`` features (see :mod:`visionkit.data.datasets.snippet_features` for the time of each step).
    Every file is found and its shape checked at construction (memory-mapped: the values are read per item).

    Items: ``features`` float32 ``(L, D)`` (this key replaces ``video``), ``segments`` float32 ``(K, 2)``
    seconds from ``clip_start`` (cropped to the item's span ``[0, duration)``), ``segment_labels`` int64
    ``(K,)``, ``fps`` (= ``feature_fps``), ``duration`` and ``clip_start`` (seconds), ``step_offset``
    (seconds from ``clip_start`` to the centre of the item's step 0), ``video_id``, ``path`` and ``index``
    int64. The time conventions are those of the module docstring:

    * ``window=None``: each item is the whole annotated video (``L = T``, varying from video to video):
      ``clip_start = 0``, ``duration`` = the annotated duration, segments as annotated (cropped to
      ``[0, duration]``), step ``j`` centred at ``step_offset + j / feature_fps`` with
      ``step_offset = feature_offset``;
    * an int ``window``: items are windows of ``L = min(window, T)`` steps ``[s, s + L)``, ``window_stride``
      apart, the last one aligned to the sequence's end; an item spans its steps' seconds:
      ``clip_start = feature_offset + (s - 0.5) / feature_fps``, ``duration = L / feature_fps``,
      ``step_offset = 0.5 / feature_fps``.

    Args:
        annotations: ``{video_id: VideoAnnotation}``.
        classes: the class names the labels index.
        features_root: folder of the feature files.
        feature_fps: feature steps per second.
        feature_offset: time of step 0 in seconds.
        window: steps per item; ``None``: whole sequences.
        window_stride: step between windows; ``None``: ``window`` (no overlap).
        subset: only the videos of this subset; ``None``: every video of ``annotations``.

    ``in_channels`` is the feature dimension ``D`` (the same for every file).

    Raises:
        DatasetNotFoundError: ``features_root`` is missing, no video of ``subset`` is annotated, or an
            annotated video has no feature file (naming the video id and the paths tried).
        FeatureReadError: a file that is unreadable, not ``(T, D)``, or whose ``D`` differs from the others'.
        ValueError: a bad sequence argument (see :func:`check_feature_args`).
    """

    name = "TemporalActionFeatures"

    def __init__(
        self,
        annotations: dict[str, VideoAnnotation],
        classes: list[str],
        features_root: str | Path,
        feature_fps: float,
        feature_offset: float = 0.0,
        window: int | None = None,
        window_stride: int | None = None,
        subset: str | None = None,
    ) -> None:
        stride = check_feature_args(feature_fps, feature_offset, window, window_stride)
        self.root = Path(features_root)
        self._select(annotations, classes, subset, self.root)
        found = find_feature_files(self.root, [v.video_id for v in self.videos], self.name)
        self.paths = [found[v.video_id] for v in self.videos]
        self.feature_fps, self.feature_offset = float(feature_fps), float(feature_offset)
        self.window, self.window_stride = window, stride
        self.lengths: list[int] = []
        self.items = []
        for v, path in enumerate(self.paths):
            length, dim = feature_shape(path)
            if v == 0:
                self.in_channels = dim
            elif dim != self.in_channels:
                raise FeatureReadError(
                    path, f"has feature dimension D={dim}; {self.paths[0].name} has D={self.in_channels}"
                )
            self.lengths.append(length)
            starts = [0] if window is None else window_starts(length, window, stride)
            self.items += [(v, s) for s in starts]

    def _layout(self) -> str:
        return FEATURE_LAYOUT

    @property
    def feature_dim(self) -> int:
        """Feature dimension ``D``."""
        return self.in_channels

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _ = split_key(key)
        v, start = self.items[index]
        video, path = self.videos[v], self.paths[v]
        features = read_features(path)
        stop = len(features) if self.window is None else min(start + self.window, len(features))
        features = features[start:stop]
        if self.window is None:  # the whole annotated video
            clip_start, duration, step_offset = 0.0, video.duration, self.feature_offset
            segments, labels = crop_segments(video.segments, video.labels, 0.0, duration)
        else:  # the seconds of steps [start, stop): each step spans 1 / fps around its centre
            step = 1.0 / self.feature_fps
            clip_start = self.feature_offset + (start - 0.5) * step
            duration, step_offset = len(features) * step, 0.5 * step
            segments, labels = self._targets(video, clip_start, duration)
        return {
            "features": features.contiguous(),
            "segments": segments,
            "segment_labels": labels,
            "fps": self.feature_fps,
            "duration": float(duration),
            "clip_start": float(clip_start),
            "step_offset": float(step_offset),
            "video_id": video.video_id,
            "path": str(path),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def plot(self, sample: dict[str, Any], prediction: Any = None):
        """The feature sequence as a ``D x L`` heat map over seconds, with the timeline of ``segments`` below
        (and of predicted segments when ``prediction`` is a dict with ``segments``, ``labels``).
        Returns a matplotlib Figure."""
        from visionkit.utils.viz import pyplot

        plt = pyplot()
        features = torch.as_tensor(sample["features"]).detach().float().cpu()
        duration = float(sample.get("duration", len(features) / self.feature_fps))
        step = 1.0 / float(sample.get("fps", self.feature_fps))
        first = float(sample.get("step_offset", 0.5 * step)) - 0.5 * step  # left edge of step 0, in seconds
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(8, 4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        top.imshow(
            features.T.numpy(),
            aspect="auto",
            cmap="viridis",
            extent=(first, first + len(features) * step, features.shape[1], 0),
            interpolation="nearest",
        )
        top.set_ylabel("feature dim")
        video_id = sample.get("video_id", "")
        start = float(sample.get("clip_start", 0.0))
        top.set_title(
            f"{video_id}  from {start:.2f} s  ({len(features)} steps x {features.shape[1]} dims)", fontsize=9
        )
        self._draw_segments(bottom, sample["segments"], sample["segment_labels"], 0.55, "truth")
        predicted = isinstance(prediction, dict) and "segments" in prediction
        if predicted:
            self._draw_segments(bottom, prediction["segments"], prediction["labels"], 0.05, "predicted")
        bottom.set_xlim(0, duration)
        bottom.set_ylim(0, 1)
        bottom.set_yticks([0.25, 0.75], ["predicted" if predicted else "", "truth"])
        bottom.set_xlabel("seconds")
        fig.tight_layout()
        return fig
