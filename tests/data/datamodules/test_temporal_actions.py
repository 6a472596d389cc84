"""``TemporalActionDataModule``: splits from the file's subsets, ``num_classes``/``in_channels`` set in the
constructor, one-line errors there (roots, subsets, missing files, bad clip or feature arguments), segments
past the duration clipped on request, ragged segments batched as lists, features zero-padded with a mask,
and the same batches with and without worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.data.tal_files import ramp_features, thumos_database, write_activitynet_json, write_features
from tests.data.video_files import moving_frames, write_frame_folder, write_video
from tests.helpers import cli_error_line, error_of, run_dirs
from visionkit.data.datamodules.temporal_actions import TemporalActionDataModule, collate_temporal_actions
from visionkit.data.datasets.temporal_actions import TemporalActionFeatures, TemporalActionVideos
from visionkit.data.errors import AnnotationError, DatasetNotFoundError
from visionkit.errors import ConfigValueError


@pytest.fixture
def annotation_file(tmp_path: Path) -> Path:
    """THUMOS-style: val_a (10 s, 2 segments), val_b (8 s, 1) in "validation"; test_a (6 s, 0) in "test"."""
    return write_activitynet_json(tmp_path / "thumos.json", thumos_database())


@pytest.fixture
def features_root(tmp_path: Path) -> Path:
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20, 3))
    write_features(root, "val_b", ramp_features(16, 3), ".pt")
    write_features(root, "test_a", ramp_features(12, 3))
    return root


@pytest.fixture
def video_root(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    write_video(root / "val_a.mp4", moving_frames(40), fps=4)
    write_frame_folder(root / "val_b", moving_frames(32, seed=1))
    write_video(root / "test_a.mp4", moving_frames(24, seed=2), fps=4)
    return root


def _thumos(annotation_file: Path, **kwargs) -> TemporalActionDataModule:
    return TemporalActionDataModule(
        str(annotation_file), train_subset="validation", val_subset="test", **kwargs
    )


def test_feature_splits_and_padded_batches(annotation_file: Path, features_root: Path) -> None:
    dm = _thumos(annotation_file, features_root=str(features_root), feature_fps=2.0, batch_size=2)
    assert dm.num_classes == 2 and dm.classes == ["Diving", "LongJump"] and dm.in_channels == 3
    assert dm.default_image_size == 112 and dm.batch_size == 2
    train, val, test = dm.dataset("train"), dm.dataset("val"), dm.dataset("test")
    assert isinstance(train, TemporalActionFeatures) and len(train) == 2 and len(val) == 1 and len(test) == 1
    assert [v.video_id for v in test.videos] == ["test_a"]  # test_subset None: the val subset
    batch = next(iter(dm.train_dataloader()))
    lengths = {"val_a": 20, "val_b": 16}
    assert batch["features"].shape == (2, 20, 3) and batch["feature_mask"].dtype == torch.bool
    assert batch["feature_mask"].sum(1).tolist() == [lengths[v] for v in batch["video_id"]]
    short = batch["video_id"].index("val_b")
    assert torch.all(batch["features"][short, 16:] == 0) and batch["features"][short, 15, 0] == 15
    assert isinstance(batch["segments"], list) and [len(s) for s in batch["segments"]] == [
        {"val_a": 2, "val_b": 1}[v] for v in batch["video_id"]
    ]
    assert isinstance(batch["segment_labels"], list) and batch["index"].dtype == torch.int64
    assert batch["fps"].tolist() == [2.0, 2.0]


def test_feature_windows_stack_without_padding(annotation_file: Path, features_root: Path) -> None:
    dm = _thumos(
        annotation_file,
        features_root=str(features_root),
        feature_fps=2.0,
        feature_offset=0.25,
        window=8,
        window_stride=8,
        batch_size=8,
    )
    # val_a: 20 steps -> windows at 0, 8, 12; val_b: 16 steps -> 0, 8
    assert len(dm.dataset("train")) == 5
    batch = next(iter(dm.val_dataloader()))  # test_a: 12 steps -> windows at 0, 4
    assert batch["features"].shape == (2, 8, 3) and bool(batch["feature_mask"].all())
    # steps [s, s + 8) span [0.25 + (s - 0.5) / 2, ...) s = [s / 2, ...) s: the half-step offset cancels
    assert batch["clip_start"].tolist() == [0.0, 2.0] and batch["step_offset"].tolist() == [0.25, 0.25]


def test_video_batches_and_eval_is_deterministic(annotation_file: Path, video_root: Path) -> None:
    dm = _thumos(
        annotation_file,
        video_root=str(video_root),
        num_frames=8,
        clip_mode="random",
        augment=True,
        frames_fps=4,
        image_size=16,
        batch_size=2,
    )
    assert dm.in_channels == 3 and dm.num_classes == 2
    train, val = dm.dataset("train"), dm.dataset("val")
    assert (
        isinstance(train, TemporalActionVideos)
        and train.sampler.mode == "random"
        and train.augment is not None
    )
    assert (
        val.sampler.mode == "sliding" and val.augment is None and len(val) == 3
    )  # 24 frames: starts 0, 8, 16
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 8, 3, 16, 16) and "feature_mask" not in batch
    assert isinstance(batch["segments"], list) and all(s.shape[1] == 2 for s in batch["segments"])
    assert sorted(batch["video_id"]) == ["val_a", "val_b"]
    uniform = _thumos(
        annotation_file,
        video_root=str(video_root),
        num_frames=4,
        clip_mode="uniform",
        frames_fps=4,
        image_size=8,
        channels=1,
    )
    assert uniform.in_channels == 1 and uniform.dataset("val").sampler.mode == "uniform"
    assert uniform.dataset("val")[0]["video"].shape == (4, 1, 8, 8)


def test_same_batches_with_two_workers(annotation_file: Path, video_root: Path) -> None:
    def batches(workers: int) -> list[dict]:
        dm = _thumos(
            annotation_file,
            video_root=str(video_root),
            num_frames=4,
            clip_mode="random",
            augment=True,
            frames_fps=4,
            image_size=8,
            batch_size=1,
            num_workers=workers,
            seed=3,
        )
        loader = dm.train_dataloader()
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out += list(loader)
        return out

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel, strict=True):
        assert a["video_id"] == b["video_id"] and torch.equal(a["clip_start"], b["clip_start"])
        assert torch.equal(a["video"], b["video"])
        assert all(torch.equal(x, y) for x, y in zip(a["segments"], b["segments"], strict=True))
    # the clip position or augmentation is drawn per epoch: some video differs between the epochs
    assert any(
        not torch.equal(serial[i]["video"], serial[j]["video"])
        for i in range(2)
        for j in range(2, 4)
        if serial[i]["video_id"] == serial[j]["video_id"]
    )


def test_constructor_errors_are_one_line(
    annotation_file: Path, video_root: Path, features_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="exactly one of video_root"):
        _thumos(annotation_file)
    with pytest.raises(ValueError, match="exactly one of video_root"):
        _thumos(annotation_file, video_root=str(video_root), features_root=str(features_root))
    with pytest.raises(ValueError, match="feature_fps"):
        _thumos(annotation_file, features_root=str(features_root))
    with pytest.raises(AnnotationError) as exc:  # ActivityNet subset names on a THUMOS-style file
        TemporalActionDataModule(str(annotation_file), features_root=str(features_root), feature_fps=2.0)
    message = error_of(exc)
    assert "subset 'training'" in message and "['test', 'validation']" in message
    (video_root / "test_a.mp4").unlink()
    with pytest.raises(DatasetNotFoundError) as exc:
        _thumos(annotation_file, video_root=str(video_root))
    assert "'test_a'" in error_of(exc)
    with pytest.raises(AnnotationError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        _thumos(tmp_path / "bad.json", video_root=str(video_root))
    with pytest.raises(ValueError, match="clip_mode must be"):
        _thumos(annotation_file, video_root=str(video_root), clip_mode="dense")


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"clip_stride": 0}, ValueError, "clip stride must be a positive integer (frames), got 0"),
        ({"num_frames": 0}, ValueError, "num_frames must be a positive integer, got 0"),
        ({"clip_mode": "dense"}, ValueError, "clip_mode must be 'uniform', 'random' or 'sliding', got 'dense'"),
        ({"fps": -2.0}, ValueError, "fps must be positive"),
        ({"frames_fps": 0.0}, ValueError, "frames_fps must be positive"),
        ({"channels": 4}, ConfigValueError, "channels must be 1 (grey) or 3 (RGB), got 4"),
    ],
)
def test_bad_clip_arguments_fail_in_the_constructor(
    annotation_file: Path, video_root: Path, kwargs: dict, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error) as exc:
        _thumos(annotation_file, video_root=str(video_root), **kwargs)
    assert needle in error_of(exc)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"window": 0}, "window must be a positive number of feature steps, got 0"),
        ({"window": 4, "window_stride": 0}, "window_stride must be a positive number of feature steps"),
        ({"window_stride": 4}, "with a window, got 4 (window None)"),
        ({"feature_fps": 0.0}, "feature_fps must be positive"),
        ({"feature_offset": float("inf")}, "feature_offset must be a finite number of seconds"),
    ],
)
def test_bad_feature_arguments_fail_in_the_constructor(
    annotation_file: Path, features_root: Path, kwargs: dict, needle: str
) -> None:
    with pytest.raises(ValueError) as exc:
        _thumos(annotation_file, features_root=str(features_root), **{"feature_fps": 2.0, **kwargs})
    assert needle in error_of(exc)


def test_bad_clip_argument_is_one_cli_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, annotation_file: Path, video_root: Path
) -> None:
    config = tmp_path / "data.yaml"
    config.write_text(
        "data:\n  class_path: TemporalActionDataModule\n  init_args:\n"
        f"    annotation_file: {annotation_file}\n    video_root: {video_root}\n"
        "    train_subset: validation\n    val_subset: test\n    num_frames: 4\n    clip_stride: 0\n"
    )
    line = cli_error_line(
        capsys,
        ["fit", "--config", str(REPO / "tests" / "conf" / "video.yaml"), "--config", str(config),
         "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"],
    )
    assert "clip stride must be a positive integer (frames), got 0" in line
    assert not run_dirs()


def test_clip_to_duration_is_threaded_to_the_annotation_reader(tmp_path: Path, features_root: Path) -> None:
    database = thumos_database()
    database["val_b"]["annotations"][0]["segment"] = [0.5, 8.75]  # val_b lasts 8 s
    path = write_activitynet_json(tmp_path / "long.json", database)
    with pytest.raises(AnnotationError, match="'val_b' annotation 0: segment .* ends past the video's duration"):
        _thumos(path, features_root=str(features_root), feature_fps=2.0)
    with pytest.warns(UserWarning, match="'val_b' annotation 0: segment .* clipped to \\[0.5, 8.0\\]"):
        dm = _thumos(path, features_root=str(features_root), feature_fps=2.0, clip_to_duration=True)
    assert dm.annotations["val_b"].segments.tolist() == [[0.5, 8.0]]


def test_collate_passes_video_samples_through() -> None:
    samples = [
        {
            "video": torch.zeros(2, 3, 4, 4),
            "segments": torch.zeros(k, 2),
            "segment_labels": torch.zeros(k, dtype=torch.long),
            "index": torch.tensor(i),
        }
        for i, k in enumerate((0, 3))
    ]
    batch = collate_temporal_actions(samples)
    assert batch["video"].shape == (2, 2, 3, 4, 4) and [len(s) for s in batch["segments"]] == [0, 3]
    assert set(batch) == {"video", "segments", "segment_labels", "index"}


def test_plot_returns_a_figure(annotation_file: Path, features_root: Path, video_root: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    for dm in (
        _thumos(annotation_file, features_root=str(features_root), feature_fps=2.0),
        _thumos(annotation_file, video_root=str(video_root), num_frames=4, frames_fps=4, image_size=8),
    ):
        fig = dm.plot(dm.dataset("train")[0])
        try:
            assert isinstance(fig, Figure)
        finally:
            plt.close(fig)
