"""TAL datasets: sliding/uniform/random clips of videos and frames folders, windows of feature sequences,
segments cropped to each sample and shifted to its start (hand-computed), and one-line errors for missing or
malformed files, raised at construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.tal_files import ramp_features, thumos_database, write_activitynet_json, write_features
from tests.data.video_files import LEVELS, frame_index, moving_frames, write_frame_folder, write_video
from tests.helpers import error_of
from visionkit.data.datasets.tal_annotations import VideoAnnotation, read_activitynet_json
from visionkit.data.datasets.temporal_actions import (
    TemporalActionFeatures,
    TemporalActionVideos,
    window_starts,
)
from visionkit.data.errors import DatasetNotFoundError, FeatureReadError, VideoReadError

#: Segment times below are exact binary fractions; 1e-5 s absorbs float32 rounding only.
ATOL = 1e-5


@pytest.fixture
def thumos(tmp_path: Path) -> tuple[dict[str, VideoAnnotation], list[str]]:
    """val_a (10 s): LongJump=1 [1, 3], Diving=0 [5, 9]; val_b (8 s): Diving [0.5, 2]; test_a (6 s): none."""
    return read_activitynet_json(write_activitynet_json(tmp_path / "thumos.json", thumos_database()))


@pytest.fixture
def video_root(tmp_path: Path) -> Path:
    """val_a.mp4: 40 frames at 4 fps (10 s); val_b/: a frames folder of 32 frames (8 s at 4 fps)."""
    root = tmp_path / "videos"
    write_video(root / "val_a.mp4", moving_frames(40), fps=4)
    write_frame_folder(root / "val_b", moving_frames(32, seed=1))
    return root


def _close(actual: torch.Tensor, expected: list[list[float]]) -> None:
    assert actual.shape == (len(expected), 2), actual
    torch.testing.assert_close(actual, torch.tensor(expected).reshape(-1, 2), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- videos


def test_sliding_windows_with_stride_crop_and_shift_segments(thumos, video_root: Path) -> None:
    ann, classes = thumos
    data = TemporalActionVideos(
        ann,
        classes,
        video_root,
        num_frames=8,
        clip_stride=6,
        image_size=16,
        frames_fps=4,
        subset="validation",
    )
    # val_a: 40 frames, windows of 8 every 6, the last aligned to the end: starts 0, 6, ..., 30, 32 -> 7;
    # val_b: 32 frames: starts 0, 6, 12, 18, 24 -> 5
    assert len(data) == 12 and data.items[:7] == [(0, c) for c in range(7)]
    s = data[1]  # frames 6..13: 1.5 s to 3.5 s
    assert s["video"].shape == (8, 3, 16, 16) and s["video"].dtype == torch.float32
    assert 0 <= float(s["video"].min()) and float(s["video"].max()) <= 1
    assert [frame_index(f) for f in s["video"]] == list(range(6, 14))
    assert s["fps"] == 4.0 and s["duration"] == 2.0 and s["clip_start"] == 1.5
    _close(s["segments"], [[0.0, 1.5]])  # LongJump [1, 3] cropped to [1.5, 3], shifted by 1.5 s
    assert s["segment_labels"].tolist() == [1] and s["segment_labels"].dtype == torch.int64
    assert s["video_id"] == "val_a" and s["path"] == str(video_root / "val_a.mp4")
    assert s["index"].dtype == torch.int64 and int(s["index"]) == 1
    last = data[6]  # frames 32..39: 8 s to 10 s; Diving [5, 9] -> [8, 9] -> [0, 1]
    assert last["clip_start"] == 8.0 and frame_index(last["video"][0]) == 32 % LEVELS  # levels cycle
    _close(last["segments"], [[0.0, 1.0]])
    assert last["segment_labels"].tolist() == [0]
    middle = data[2]  # 3 s to 5 s: no segment overlaps
    assert middle["segments"].shape == (0, 2) and middle["segment_labels"].shape == (0,)


def test_frames_folder_and_fps_resampling(thumos, video_root: Path) -> None:
    ann, classes = thumos
    data = TemporalActionVideos(
        ann, classes, video_root, num_frames=4, fps=2.0, image_size=8, frames_fps=4, subset="validation"
    )
    # at 2 fps: val_a has 20 frames -> 5 windows of 4, val_b has 16 -> 4 windows
    assert len(data) == 9
    s = data[1]  # 2 s to 4 s: source frames floor(t * 4) for t = 2, 2.5, 3, 3.5
    assert [frame_index(f) for f in s["video"]] == [8, 10, 12, 14]
    assert s["fps"] == 2.0 and s["duration"] == 2.0 and s["clip_start"] == 2.0
    _close(s["segments"], [[0.0, 1.0]])
    folder = data[5]  # val_b's first window, 0 s to 2 s: Diving [0.5, 2]
    assert folder["video_id"] == "val_b" and folder["path"] == str(video_root / "val_b")
    _close(folder["segments"], [[0.5, 2.0]])


def test_uniform_mode_squeezes_the_whole_video(thumos, video_root: Path) -> None:
    ann, classes = thumos
    data = TemporalActionVideos(
        ann,
        classes,
        video_root,
        num_frames=8,
        clip_mode="uniform",
        image_size=8,
        frames_fps=4,
        subset="validation",
    )
    assert len(data) == 2
    s = data[0]
    assert s["fps"] == pytest.approx(0.8, abs=1e-12) and s["duration"] == pytest.approx(10.0, abs=1e-9)
    assert s["clip_start"] == 0.0
    assert [frame_index(f) for f in s["video"][:4]] == [2, 7, 12, 17]  # floor((k + 0.5) * 40 / 8)
    _close(s["segments"], [[1.0, 3.0], [5.0, 9.0]])
    assert s["segment_labels"].tolist() == [1, 0]


def test_random_mode_draws_per_epoch_and_centres_without_one(thumos, video_root: Path) -> None:
    ann, classes = thumos
    data = TemporalActionVideos(
        ann,
        classes,
        video_root,
        num_frames=8,
        clip_mode="random",
        image_size=8,
        frames_fps=4,
        subset="validation",
        augment=True,
        channels=1,
    )
    assert len(data) == 2
    centred = data[0]
    assert centred["clip_start"] == 4.0 and centred["video"].shape == (
        8,
        1,
        8,
        8,
    )  # start (40 - 8) // 2 frames
    starts = {data[(0, epoch)]["clip_start"] for epoch in range(6)}
    assert len(starts) > 1
    a, b = data[(0, 3)], data[(0, 3)]
    assert a["clip_start"] == b["clip_start"] and torch.equal(a["video"], b["video"])
    for epoch in range(6):
        s = data[(0, epoch)]
        _close(s["segments"], crop_expected(s["clip_start"]))


def crop_expected(start: float) -> list[list[float]]:
    """val_a's segments seen by a 2 s clip from ``start`` (hand rule: intersect, shift, drop empty)."""
    out = []
    for s, e in ((1.0, 3.0), (5.0, 9.0)):
        lo, hi = max(s, start), min(e, start + 2.0)
        if hi > lo:
            out.append([lo - start, hi - start])
    return out


def test_missing_video_names_the_id_and_other_subsets_are_not_checked(thumos, video_root: Path) -> None:
    ann, classes = thumos
    TemporalActionVideos(ann, classes, video_root, num_frames=8, subset="validation")  # test_a has no file
    with pytest.raises(DatasetNotFoundError) as exc:
        TemporalActionVideos(ann, classes, video_root, num_frames=8, subset="test")
    message = error_of(exc)
    assert "'test_a'" in message and str(video_root / "test_a") in message and ".mp4" in message
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        TemporalActionVideos(ann, classes, video_root / "nope", subset="validation")
    with pytest.raises(DatasetNotFoundError, match="no videos of subset 'training'"):
        TemporalActionVideos(ann, classes, video_root, subset="training")


def test_unreadable_video_fails_at_construction_in_sliding_mode(thumos, video_root: Path) -> None:
    ann, classes = thumos
    (video_root / "test_a.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoReadError) as exc:
        TemporalActionVideos(ann, classes, video_root, num_frames=8, subset="test")
    assert "test_a.mp4" in error_of(exc)


# ---------------------------------------------------------------- features


def test_window_starts() -> None:
    assert window_starts(20, 8, 6) == [0, 6, 12]
    assert window_starts(20, 8, 8) == [0, 8, 12]
    assert window_starts(5, 8, 8) == [0]
    assert window_starts(16, 8, 8) == [0, 8]


@pytest.mark.parametrize("ext", [".npy", ".pt"])
def test_feature_windows_with_offset(thumos, tmp_path: Path, ext: str) -> None:
    ann, classes = thumos
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20), ext)
    write_features(root, "val_b", ramp_features(5), ext)
    data = TemporalActionFeatures(
        ann,
        classes,
        root,
        feature_fps=2.0,
        feature_offset=0.25,
        window=8,
        window_stride=6,
        subset="validation",
    )
    assert data.in_channels == 4 and data.feature_dim == 4
    assert data.items == [(0, 0), (0, 6), (0, 12), (1, 0)]
    first = data[0]  # steps 0..7 -> [0.25, 4.25) s: LongJump [1, 3] -> [0.75, 2.75]
    assert first["features"].shape == (8, 4) and first["features"].dtype == torch.float32
    assert "video" not in first
    assert first["clip_start"] == 0.25 and first["duration"] == 4.0 and first["fps"] == 2.0
    _close(first["segments"], [[0.75, 2.75]])
    assert first["segment_labels"].tolist() == [1]
    second = data[1]  # steps 6..13 -> [3.25, 7.25) s: Diving [5, 9] -> [5, 7.25] -> [1.75, 4.0]
    assert second["features"][:, 0].tolist() == list(range(6, 14))
    assert second["clip_start"] == 3.25
    _close(second["segments"], [[1.75, 4.0]])
    assert second["segment_labels"].tolist() == [0]
    third = data[2]  # steps 12..19 -> [6.25, 10.25) s: Diving -> [6.25, 9] -> [0, 2.75]
    _close(third["segments"], [[0.0, 2.75]])
    short = data[3]  # val_b has 5 steps, fewer than the window: one item of 5 steps, [0.25, 2.75) s
    assert short["features"].shape == (5, 4) and short["duration"] == 2.5
    _close(short["segments"], [[0.25, 1.75]])  # Diving [0.5, 2] shifted by 0.25 s
    assert short["video_id"] == "val_b" and short["path"] == str(root / f"val_b{ext}")
    assert int(short["index"]) == 3 and short["index"].dtype == torch.int64


def test_whole_sequences_by_default(thumos, tmp_path: Path) -> None:
    ann, classes = thumos
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20, 3))
    write_features(root, "val_b", ramp_features(16, 3), ".pt")
    data = TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")
    assert len(data) == 2 and [len(data[i]["features"]) for i in range(2)] == [20, 16]
    _close(data[0]["segments"], [[1.0, 3.0], [5.0, 9.0]])
    assert data[1]["duration"] == 8.0 and data[1]["clip_start"] == 0.0


def test_feature_file_problems_are_one_line(thumos, tmp_path: Path) -> None:
    ann, classes = thumos
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20))
    with pytest.raises(DatasetNotFoundError) as exc:
        TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")
    message = error_of(exc)
    assert "'val_b'" in message and str(root / "val_b.npy") in message and str(root / "val_b.pt") in message

    write_features(root, "val_b", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(FeatureReadError) as exc:
        TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")
    assert "val_b.npy" in error_of(exc) and "(2, 3, 4)" in error_of(exc) and "(T, D)" in error_of(exc)

    write_features(root, "val_b", ramp_features(6, 5))
    with pytest.raises(FeatureReadError, match="D=5; val_a.npy has D=4"):
        TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")

    (root / "val_b.npy").unlink()
    torch.save({"features": torch.zeros(3, 4)}, root / "val_b.pt")
    with pytest.raises(FeatureReadError, match="holds a dict; expected a .T, D. tensor"):
        TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")

    (root / "val_b.pt").write_bytes(b"garbage")
    with pytest.raises(FeatureReadError) as exc:
        TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")
    assert "val_b.pt" in error_of(exc)
    assert isinstance(exc.value, VideoReadError)

    with pytest.raises(ValueError, match="feature_fps must be positive"):
        TemporalActionFeatures(ann, classes, root, feature_fps=0.0, subset="validation")


def test_feature_plot_is_a_figure(thumos, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    ann, classes = thumos
    write_features(tmp_path / "f", "test_a", ramp_features(12))
    data = TemporalActionFeatures(ann, classes, tmp_path / "f", feature_fps=2.0, subset="test")
    sample = data[0]
    fig = data.plot(sample, {"segments": torch.tensor([[1.0, 2.0]]), "labels": torch.tensor([0])})
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 2
        assert fig.axes[1].get_xlim() == (0.0, 6.0)
    finally:
        plt.close(fig)
