"""``TemporalActionDataModule``: temporal action localization on an ActivityNet-style annotation file, from
videos (clips of frames) or from per-snippet feature files; feature batches are zero-padded with a mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from visionkit.data.clips import CLIP_MODES, ClipMode
from visionkit.data.collate import collate_samples
from visionkit.data.datamodules.video_base import VideoDataModule
from visionkit.data.datasets.snippet_features import feature_shape, find_feature_files
from visionkit.data.datasets.tal_annotations import read_activitynet_json, subset_annotations
from visionkit.data.datasets.temporal_actions import (
    TemporalActionFeatures,
    TemporalActionVideos,
    check_clip_args,
    check_feature_args,
    find_video_files,
)
from visionkit.data.errors import AnnotationError
from visionkit.data.transforms import check_channels
from visionkit.errors import check_choice

__all__ = ["TemporalActionDataModule", "collate_temporal_actions"]


def collate_temporal_actions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch TAL samples: ``features`` ``(L_i, D)`` are zero-padded at the end to the batch's longest ``L``
    into ``(B, L, D)`` and a ``feature_mask`` bool ``(B, L)`` (True on real steps) is added; every other
    field goes through :func:`~visionkit.data.collate.collate_samples` (``segments`` and
    ``segment_labels`` stay lists, ``video`` is stacked)."""
    if not samples or "features" not in samples[0]:
        return collate_samples(samples)
    features = [torch.as_tensor(s["features"]) for s in samples]
    longest = max(len(f) for f in features)
    padded = features[0].new_zeros(len(features), longest, features[0].shape[1])
    mask = torch.zeros(len(features), longest, dtype=torch.bool)
    for i, f in enumerate(features):
        padded[i, : len(f)] = f
        mask[i, : len(f)] = True
    batch = collate_samples([{k: v for k, v in s.items() if k != "features"} for s in samples])
    return {"features": padded, "feature_mask": mask, **batch}


class TemporalActionDataModule(VideoDataModule):
    """Temporal action localization: annotations from an ActivityNet-style JSON
    (:func:`~visionkit.data.datasets.tal_annotations.read_activitynet_json`), samples from videos
    (:class:`~visionkit.data.datasets.temporal_actions.TemporalActionVideos`) or from feature files
    (:class:`~visionkit.data.datasets.temporal_actions.TemporalActionFeatures`).

    Splits are the file's subsets: ActivityNet ``train_subset="training"``, ``val_subset="validation"``;
    THUMOS14 (ActionFormer's JSON) ``train_subset="validation"``, ``val_subset="test"``. The JSON is read and
    every video of the used subsets is looked for on disk in ``__init__``, and the clip or feature arguments
    are checked there, so a bad file, an unknown subset, a missing video or a bad argument fails at once,
    in one line (a video file that cannot be opened fails when its split's dataset is built).

    Videos: training clips use ``clip_mode``; validation and test clips are deterministic: whole videos
    for ``"uniform"``, sliding windows otherwise (covering every frame). With ``augment``, training clips
    get one random resized crop and flip each. ``in_channels`` is ``channels``.

    Features: every split reads whole sequences (``window=None``) or sliding windows. ``in_channels`` is
    the feature dimension ``D`` (read from the first file). Sequences of different lengths are batched by
    :func:`collate_temporal_actions`: ``features`` zero-padded to ``(B, L_max, D)`` plus ``feature_mask``
    ``(B, L_max)`` bool, True on real steps.

    Args:
        annotation_file: the ActivityNet-style JSON.
        video_root: folder of videos or frames folders (exactly one of ``video_root`` and ``features_root``).
        features_root: folder of ``<video_id>.npy``/``.pt`` feature files.
        train_subset, val_subset: subsets of the file used for training and validation.
        test_subset: subset of the test split; ``None``: ``val_subset``.
        num_frames, fps, clip_mode, clip_stride, frames_fps: clips of videos (see
            :class:`~visionkit.data.datasets.temporal_actions.TemporalActionVideos`).
        augment: random resized crop + flip of training clips (videos only).
        feature_fps, feature_offset, window, window_stride: feature sequences (see
            :class:`~visionkit.data.datasets.temporal_actions.TemporalActionFeatures`); ``feature_fps``
            is required with ``features_root``.
        channels: 3 (RGB) or 1 (grey) frames (videos only).
        clip_to_duration: clip segments that end past their video's duration, with a warning, instead of
            failing (see :func:`~visionkit.data.datasets.tal_annotations.read_activitynet_json`).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size``, ``seed`` of :class:`VisionDataModule`.

    Raises:
        ValueError: both or neither of ``video_root``/``features_root``, or a bad clip/feature argument
            (:func:`~visionkit.data.datasets.temporal_actions.check_clip_args`,
            :func:`~visionkit.data.datasets.temporal_actions.check_feature_args`) or ``channels``.
        AnnotationError: a malformed annotation file, or a used subset with no videos (naming the subsets
            the file has).
        DatasetNotFoundError: a missing root, or a video of a used subset without its file.
    """

    default_image_size = 112
    default_batch_size = 4
    collate_fn = staticmethod(collate_temporal_actions)

    def __init__(
        self,
        annotation_file: str,
        video_root: str | None = None,
        features_root: str | None = None,
        train_subset: str = "training",
        val_subset: str = "validation",
        test_subset: str | None = None,
        num_frames: int = 64,
        fps: float | None = None,
        clip_mode: ClipMode = "sliding",
        clip_stride: int | None = None,
        frames_fps: float = 30.0,
        augment: bool = False,
        feature_fps: float | None = None,
        feature_offset: float = 0.0,
        window: int | None = None,
        window_stride: int | None = None,
        channels: int = 3,
        clip_to_duration: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (video_root is None) == (features_root is None):
            raise ValueError(
                "give exactly one of video_root (videos or frames folders) and features_root (feature "
                f"files), got video_root={video_root!r}, features_root={features_root!r}"
            )
        check_channels(channels)
        check_choice("clip_mode", clip_mode, CLIP_MODES)
        if video_root is not None:
            check_clip_args(num_frames, fps, clip_mode, clip_stride, frames_fps)
        else:
            if feature_fps is None:
                raise ValueError("feature_fps (feature steps per second) is required with features_root")
            check_feature_args(feature_fps, feature_offset, window, window_stride)
        self.annotation_file = Path(annotation_file)
        self.annotations, self.classes = read_activitynet_json(
            self.annotation_file, clip_to_duration=clip_to_duration
        )
        self.num_classes = len(self.classes)
        self.subsets = {
            "train": train_subset,
            "val": val_subset,
            "test": val_subset if test_subset is None else test_subset,
        }
        present = sorted({a.subset for a in self.annotations.values()})
        used: dict[str, None] = {}
        for split, subset in self.subsets.items():
            videos = subset_annotations(self.annotations, subset)
            if not videos:
                raise AnnotationError(
                    self.annotation_file,
                    f"has no videos of subset '{subset}' ({split} split); its subsets: {present}",
                )
            used.update(dict.fromkeys(videos))
        used_ids = list(used)
        self.video_root = None if video_root is None else Path(video_root)
        self.features_root = None if features_root is None else Path(features_root)
        self.clip_args = {
            "num_frames": num_frames,
            "fps": fps,
            "clip_mode": clip_mode,
            "clip_stride": clip_stride,
            "frames_fps": frames_fps,
        }
        self.augment = augment
        self.feature_args = {
            "feature_fps": feature_fps,
            "feature_offset": feature_offset,
            "window": window,
            "window_stride": window_stride,
        }
        if self.video_root is not None:
            find_video_files(self.video_root, used_ids, "TemporalActionVideos")
            self.in_channels = channels
        else:
            paths = find_feature_files(self.features_root, used_ids, "TemporalActionFeatures")
            self.in_channels = feature_shape(paths[used_ids[0]])[1]

    def build_dataset(self, split: str) -> TemporalActionVideos | TemporalActionFeatures:
        subset = self.subsets[split]
        if self.features_root is not None:
            return TemporalActionFeatures(
                self.annotations, self.classes, self.features_root, subset=subset, **self.feature_args
            )
        args = dict(self.clip_args)
        if split != "train" and args["clip_mode"] != "uniform":
            args["clip_mode"] = "sliding"
        return TemporalActionVideos(
            self.annotations,
            self.classes,
            self.video_root,
            image_size=self.image_size,
            channels=self.in_channels,
            seed=self.seed,
            augment=self.augment and split == "train",
            subset=subset,
            **args,
        )
