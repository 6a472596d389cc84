"""TAL datasets: sliding/uniform/random clips of videos and frames folders (each video opened once, at
construction), windows and whole feature sequences with a feature offset, segments cropped to each sample
and shifted to its start (hand-computed), and one-line errors for missing or malformed files and bad
arguments, raised at construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import visionkit.data.datasets.temporal_actions as temporal_actions
from tests.data.tal_files import (
    ramp_features,
    thumos_database,
    video_entry,
    write_activitynet_json,
    write_features,
)
from tests.data.video_files import LEVELS, frame_index, moving_frames, write_frame_folder, write_video
from tests.helpers import error_of
from visionkit.data.clips import window_starts
from visionkit.data.datasets.tal_annotations import VideoAnnotation, read_activitynet_json
from visionkit.data.datasets.temporal_actions import TemporalActionFeatures, TemporalActionVideos
from visionkit.data.errors import DatasetNotFoundError, FeatureReadError, VideoReadError
from visionkit.errors import ConfigValueError

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


@pytest.mark.parametrize("mode", ["sliding", "random", "uniform"])
@pytest.mark.parametrize(
    ("content", "needle"), [(b"", "file is empty (0 bytes)"), (b"not a video", "cannot be opened")],
    ids=["zero-byte", "corrupt"],
)
def test_unreadable_video_fails_at_construction_in_every_mode(
    thumos, video_root: Path, mode: str, content: bytes, needle: str
) -> None:
    ann, classes = thumos
    (video_root / "test_a.mp4").write_bytes(content)
    with pytest.raises(VideoReadError) as exc:
        TemporalActionVideos(ann, classes, video_root, num_frames=8, clip_mode=mode, subset="test")
    message = error_of(exc)
    assert message.startswith(f"unreadable video '{video_root / 'test_a.mp4'}': ") and needle in message


@pytest.mark.parametrize("mode", ["sliding", "random", "uniform"])
def test_frames_folder_with_a_gap_fails_at_construction_in_every_mode(
    thumos, video_root: Path, mode: str
) -> None:
    ann, classes = thumos
    (video_root / "val_b" / "img_00005.jpg").unlink()
    with pytest.raises(VideoReadError) as exc:
        TemporalActionVideos(
            ann, classes, video_root, num_frames=8, clip_mode=mode, frames_fps=4, subset="validation"
        )
    message = error_of(exc)
    assert f"'{video_root / 'val_b'}'" in message and "frame img_00005.jpg is missing" in message


@pytest.mark.parametrize("mode", ["sliding", "random", "uniform"])
def test_each_video_is_opened_once_at_construction(
    thumos, video_root: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, classes = thumos
    opened: list[str] = []

    def counting_open(path, fps=None):
        opened.append(Path(path).name)
        return open_video(path, fps)

    open_video = temporal_actions.open_video
    monkeypatch.setattr(temporal_actions, "open_video", counting_open)
    data = TemporalActionVideos(
        ann, classes, video_root, num_frames=8, clip_mode=mode, image_size=8, frames_fps=4, subset="validation"
    )
    assert opened == ["val_a.mp4", "val_b"] and len(data.sources) == 2
    assert [s.num_frames for s in data.sources] == [40, 32]
    for key in (0, (1, 0), len(data) - 1, (0, 2)):
        assert data[key]["video"].shape == (8, 3, 8, 8)
    assert opened == ["val_a.mp4", "val_b"]  # __getitem__ reads the kept sources


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"num_frames": 0}, ValueError, "num_frames must be a positive integer, got 0"),
        ({"clip_stride": 0}, ValueError, "clip stride must be a positive integer (frames), got 0"),
        ({"clip_mode": "dense"}, ValueError, "got 'dense'"),
        ({"fps": 0.0}, ValueError, "fps must be positive"),
        ({"frames_fps": -1.0}, ValueError, "frames_fps must be positive"),
        ({"channels": 2}, ConfigValueError, "channels must be 1 (grey) or 3 (RGB), got 2"),
        ({"image_size": 0}, ValueError, "image_size must be a positive integer"),
    ],
)
def test_bad_clip_arguments_fail_before_any_file_is_opened(
    thumos, tmp_path: Path, kwargs: dict, error: type[Exception], needle: str
) -> None:
    ann, classes = thumos
    with pytest.raises(error) as exc:  # the root does not exist: the arguments are checked first
        TemporalActionVideos(ann, classes, tmp_path / "missing", subset="validation", **kwargs)
    assert needle in error_of(exc)


# ---------------------------------------------------------------- features


def test_window_starts() -> None:
    assert window_starts(20, 8, 6) == [0, 6, 12]
    assert window_starts(20, 8, 8) == [0, 8, 12]
    assert window_starts(5, 8, 8) == [0]
    assert window_starts(16, 8, 8) == [0, 8]


@pytest.mark.parametrize("ext", [".npy", ".pt"])
def test_feature_windows_span_their_steps_seconds_with_an_offset(thumos, tmp_path: Path, ext: str) -> None:
    ann, classes = thumos
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20), ext)
    write_features(root, "val_b", ramp_features(5), ext)
    data = TemporalActionFeatures(
        ann,
        classes,
        root,
        feature_fps=2.0,
        feature_offset=0.75,
        window=8,
        window_stride=6,
        subset="validation",
    )
    # step t is centred at 0.75 + t / 2 s and spans 0.5 s around it: steps [s, s + 8) span
    # [0.75 + (s - 0.5) / 2, 0.75 + (s + 7.5) / 2) = [0.5 + s / 2, 4.5 + s / 2) s
    assert data.in_channels == 4 and data.feature_dim == 4
    assert data.items == [(0, 0), (0, 6), (0, 12), (1, 0)]
    first = data[0]  # [0.5, 4.5) s: LongJump [1, 3] -> [0.5, 2.5]; Diving [5, 9] outside
    assert first["features"].shape == (8, 4) and first["features"].dtype == torch.float32
    assert "video" not in first
    assert first["clip_start"] == 0.5 and first["duration"] == 4.0 and first["fps"] == 2.0
    assert first["step_offset"] == 0.25  # step j centred at 0.25 + j / 2 s from clip_start
    _close(first["segments"], [[0.5, 2.5]])
    assert first["segment_labels"].tolist() == [1]
    second = data[1]  # steps 6..13, [3.5, 7.5) s: Diving [5, 9] -> [5, 7.5] -> [1.5, 4.0]
    assert second["features"][:, 0].tolist() == list(range(6, 14))
    assert second["clip_start"] == 3.5 and second["step_offset"] == 0.25
    # step 9 (j = 3 of this window) is centred at 0.75 + 9 / 2 = 5.25 s of the video
    assert second["clip_start"] + second["step_offset"] + 3 / second["fps"] == 5.25
    _close(second["segments"], [[1.5, 4.0]])
    assert second["segment_labels"].tolist() == [0]
    third = data[2]  # steps 12..19, [6.5, 10.5) s: Diving -> [6.5, 9] -> [0, 2.5]
    assert third["clip_start"] == 6.5
    _close(third["segments"], [[0.0, 2.5]])
    short = data[3]  # val_b has 5 steps, fewer than the window: one item of 5 steps, [0.5, 3.0) s
    assert short["features"].shape == (5, 4) and short["duration"] == 2.5 and short["clip_start"] == 0.5
    _close(short["segments"], [[0.0, 1.5]])  # Diving [0.5, 2] shifted by 0.5 s
    assert short["video_id"] == "val_b" and short["path"] == str(root / f"val_b{ext}")
    assert int(short["index"]) == 3 and short["index"].dtype == torch.int64


def test_first_feature_window_may_start_before_the_video(thumos, tmp_path: Path) -> None:
    ann, classes = thumos
    write_features(tmp_path / "f", "val_b", ramp_features(8))
    write_features(tmp_path / "f", "val_a", ramp_features(8))
    data = TemporalActionFeatures(ann, classes, tmp_path / "f", feature_fps=2.0, window=4, subset="validation")
    s = data[data.items.index((1, 0))]  # offset 0: step 0 spans [-0.25, 0.25) s; window [-0.25, 1.75) s
    assert s["clip_start"] == -0.25 and s["duration"] == 2.0
    _close(s["segments"], [[0.75, 2.0]])  # Diving [0.5, 2] -> [0.5, 1.75] -> shifted by +0.25 s


def test_whole_sequences_by_default(thumos, tmp_path: Path) -> None:
    ann, classes = thumos
    root = tmp_path / "features"
    write_features(root, "val_a", ramp_features(20, 3))
    write_features(root, "val_b", ramp_features(16, 3), ".pt")
    data = TemporalActionFeatures(ann, classes, root, feature_fps=2.0, subset="validation")
    assert len(data) == 2 and [len(data[i]["features"]) for i in range(2)] == [20, 16]
    _close(data[0]["segments"], [[1.0, 3.0], [5.0, 9.0]])
    assert data[1]["duration"] == 8.0 and data[1]["clip_start"] == 0.0 and data[1]["step_offset"] == 0.0


def test_whole_sequence_keeps_video_time_with_a_feature_offset(tmp_path: Path) -> None:
    # ActionFormer THUMOS14 I3D: 7.5 steps/s, step t centred at 8/30 + t / 7.5 s; 10 steps reach 1.6 s only
    path = write_activitynet_json(
        tmp_path / "a.json", {"v": video_entry(3.0, "test", [(0.1, 0.2, "jump"), (2.5, 3.0, "run")])}
    )
    ann, classes = read_activitynet_json(path)
    write_features(tmp_path / "f", "v", ramp_features(10))
    data = TemporalActionFeatures(ann, classes, tmp_path / "f", feature_fps=7.5, feature_offset=8 / 30)
    s = data[0]
    assert len(s["features"]) == 10 and s["clip_start"] == 0.0
    assert s["duration"] == 3.0  # the annotated duration, not 10 / 7.5 s
    assert s["step_offset"] == pytest.approx(8 / 30, abs=1e-12)
    _close(s["segments"], [[0.1, 0.2], [2.5, 3.0]])  # as annotated: neither is cropped away
    assert s["segment_labels"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"feature_fps": 0.0}, "feature_fps must be positive"),
        ({"feature_fps": 2.0, "window": 0}, "window must be a positive number of feature steps, got 0"),
        ({"feature_fps": 2.0, "window": 4, "window_stride": 0}, "window_stride must be a positive"),
        ({"feature_fps": 2.0, "window_stride": 4}, "with a window, got 4 (window None)"),
        ({"feature_fps": 2.0, "feature_offset": float("nan")}, "feature_offset must be a finite"),
    ],
)
def test_bad_feature_arguments_fail_before_any_file_is_read(
    thumos, tmp_path: Path, kwargs: dict, needle: str
) -> None:
    ann, classes = thumos
    with pytest.raises(ValueError) as exc:
        TemporalActionFeatures(ann, classes, tmp_path / "missing", subset="validation", **kwargs)
    assert needle in error_of(exc)


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
