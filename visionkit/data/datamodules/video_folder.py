"""``VideoFolderDataModule``: clip classification over videos (or frame folders) in class folders on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.data.datamodules.base import holdout_split
from visionkit.data.datamodules.video_base import VideoDataModule
from visionkit.data.datasets.video_folder import VIDEO_LAYOUT, VideoFolder
from visionkit.data.errors import DatasetNotFoundError
from visionkit.data.transforms import check_channels


class VideoFolderDataModule(VideoDataModule):
    """Videos under ``root/<class>/`` or ``root/{train,val,test}/<class>/`` (files or frame folders).

    With split folders, ``train`` and ``val`` must both exist (a missing ``test`` falls back to ``val``);
    otherwise the VIDEOS (not the clips, so no video is in two splits) are split by a permutation seeded
    with ``seed`` into ``val_fraction``/``test_fraction`` (an empty ``test`` share falls back to ``val``).
    The folders are scanned and every video is probed in ``__init__``, so a wrong ``root`` or an
    unreadable video fails at once (:class:`~visionkit.data.errors.DatasetNotFoundError`,
    :class:`~visionkit.data.errors.VideoReadError`). Only the train split is augmented; evaluation
    splits read deterministic clips (``"random"`` mode: the centred clip).

    Args:
        root: dataset folder.
        num_frames: frames per clip.
        fps: clip frame rate (resampled); ``None``: each video's own rate.
        clip_mode: ``"random"``, ``"uniform"`` or ``"sliding"`` (see :class:`~visionkit.data.datasets.VideoFolder`).
        clip_stride: window step for ``"sliding"`` (clip frames; ``None``: ``num_frames``).
        frames_fps: frame rate of frame folders.
        augment: random resized crop + flip per training clip (:class:`~visionkit.data.transforms.ClipAugment`).
        val_fraction, test_fraction: held-out shares of the videos when there are no split folders.
        channels: 3 (RGB) or 1 (grey).
        **kwargs: ``batch_size``, ``num_workers``, ``image_size`` (frame side), ``seed`` of
            :class:`~visionkit.data.datamodules.base.VisionDataModule`.
    """

    default_image_size = 112
    default_batch_size = 8

    def __init__(
        self,
        root: str,
        num_frames: int = 8,
        fps: float | None = None,
        clip_mode: str = "random",
        clip_stride: int | None = None,
        frames_fps: float = 30.0,
        augment: bool = False,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_channels(channels)
        self.root, self.in_channels, self.augment = Path(root), channels, augment
        clip_args: dict[str, Any] = {
            "num_frames": num_frames, "fps": fps, "clip_mode": clip_mode, "clip_stride": clip_stride,
            "frames_fps": frames_fps, "image_size": self.image_size, "channels": channels, "seed": self.seed,
        }
        split_roots = {s: self.root / s for s in ("train", "val", "test") if (self.root / s).is_dir()}
        self.splits: dict[str, VideoFolder] = {}
        if "train" in split_roots:
            if "val" not in split_roots:
                raise DatasetNotFoundError("VideoFolder", self.root / "val", VIDEO_LAYOUT, "does not exist (train/ does)")
            train = VideoFolder(split_roots["train"], augment=augment, **clip_args)
            self.splits["train"] = train
            for split in ("val", "test"):
                if split in split_roots:
                    self.splits[split] = VideoFolder(split_roots[split], classes=train.classes, **clip_args)
            self.splits.setdefault("test", self.splits["val"])
        else:
            videos = VideoFolder(self.root, **clip_args)
            what = f"VideoFolder root '{self.root}' holds {len(videos.items)} videos"
            split = holdout_split(len(videos.items), val_fraction, test_fraction, self.seed, what)
            self.splits = {name: videos.subset(idx, augment=augment and name == "train") for name, idx in split.items()}
        self.classes = self.splits["train"].classes
        self.num_classes = len(self.classes)

    def build_dataset(self, split: str) -> VideoFolder:
        return self.splits[split]
