"""``VideoFolder``: class folders of video files and frame folders; one item per clip (sliding windows);
clips hold the frames the sampler chose; per-(seed, index, epoch) clips and augmentation, the same crop
on every frame; bad files fail at construction, naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.video_files import (
    frame_index,
    textured_frames,
    write_frame_folder,
    write_video,
    write_video_classes,
)
from visionkit.data.datasets.decode import LUMA
from visionkit.data.datasets.video_folder import VideoFolder
from visionkit.data.errors import DatasetNotFoundError, VideoReadError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``a/v1.mp4`` (30 frames), ``a/v2.avi`` (20), ``b/f1/`` (16 jpg frames), all at 10 fps, plus ignored files."""
    write_video_classes(tmp_path / "data", {"a": ["v1.mp4"]}, num_frames=30)
    write_video_classes(tmp_path / "data", {"a": ["v2.avi"]}, num_frames=20)
    write_video_classes(tmp_path / "data", {"b": ["f1"]}, num_frames=16)
    (tmp_path / "data" / "a" / "notes.txt").write_text("ignored: not a video extension")
    (tmp_path / "data" / "a" / ".hidden.mp4").write_bytes(b"")  # hidden: ignored, though unreadable
    (tmp_path / "data" / ".cache").mkdir()
    return tmp_path / "data"


def test_classes_labels_and_sliding_lengths(root: Path) -> None:
    # resampled to 5 fps: 15, 10 and 8 clip frames -> windows of 4 at stride 4 (last one end-aligned)
    data = VideoFolder(root, num_frames=4, fps=5, clip_mode="sliding", frames_fps=10, image_size=16)
    assert data.classes == ["a", "b"]
    assert [(p.name, label) for p, label in data.items] == [("v1.mp4", 0), ("v2.avi", 0), ("f1", 1)]
    assert [s.num_frames for s in data.sources] == [30, 20, 16]
    assert len(data) == 4 + 3 + 2
    assert [int(data[i]["label"]) for i in range(len(data))] == [0] * 7 + [1] * 2
    last = data[3]  # v1's last window starts at clip frame 11 (15 - 4), 2.2 s: source frames 22, 24, 26, 28
    assert last["video"].shape == (4, 3, 16, 16) and last["video"].dtype == torch.float32
    assert [frame_index(f) for f in last["video"]] == [22, 24, 26, 28]
    assert last["clip_start"] == pytest.approx(2.2) and last["fps"] == 5.0
    assert last["video_id"] == "v1" and last["path"] == str(root / "a" / "v1.mp4")
    assert last["index"].dtype == torch.int64 and int(last["index"]) == 3
    frames = data[8]  # f1's second window: clip frames 4-7 -> source frames 8, 10, 12, 14
    assert frames["video_id"] == "f1" and [frame_index(f) for f in frames["video"]] == [8, 10, 12, 14]
    with pytest.raises(IndexError, match="item 9 out of range"):
        data[9]


def test_eval_clips_are_centred_and_uniform_spreads_the_video(root: Path) -> None:
    data = VideoFolder(root, num_frames=4, clip_mode="random", frames_fps=10, image_size=16)
    assert len(data) == 3
    item = data[0]  # no epoch: the centred clip of v1's 30 frames starts at 13
    assert [frame_index(f) for f in item["video"]] == [13, 14, 15, 16] and item["fps"] == 10.0
    assert item["clip_start"] == pytest.approx(1.3)
    uniform = VideoFolder(root, num_frames=4, clip_mode="uniform", frames_fps=10, image_size=16)
    item = uniform[1]  # v2: 20 frames, (k + 0.5) * 5 -> 2, 7, 12, 17; 4 frames over 2 s
    assert [frame_index(f) for f in item["video"]] == [2, 7, 12, 17]
    assert item["fps"] == pytest.approx(2.0) and item["clip_start"] == 0.0


def test_random_clips_depend_on_seed_index_and_epoch_only(root: Path) -> None:
    data = VideoFolder(root, num_frames=4, clip_mode="random", frames_fps=10, image_size=16)
    first = data[(0, 0)]
    assert torch.equal(first["video"], data[(0, 0)]["video"])
    starts = {data[(0, e)]["clip_start"] for e in range(8)}
    assert len(starts) > 1  # 27 possible starts: 8 epochs drawing a single one would mean no randomness
    assert data[0]["clip_start"] == data[0]["clip_start"] == pytest.approx(1.3)
    other = VideoFolder(root, num_frames=4, clip_mode="random", frames_fps=10, image_size=16, seed=1)
    assert [other[(0, e)]["clip_start"] for e in range(8)] != [data[(0, e)]["clip_start"] for e in range(8)]


def test_augmentation_is_per_clip_and_keyed(tmp_path: Path) -> None:
    write_frame_folder(tmp_path / "a" / "still", textured_frames(6, 32), ".png")  # lossless, identical frames
    write_frame_folder(tmp_path / "b" / "still", textured_frames(6, 32, seed=1), ".png")
    data = VideoFolder(tmp_path, num_frames=4, frames_fps=10, image_size=16, augment=True)
    clip = data[(0, 3)]["video"]
    assert clip.shape == (4, 3, 16, 16)
    assert all(torch.equal(frame, clip[0]) for frame in clip)  # one crop and flip for the whole clip
    assert torch.equal(clip, data[(0, 3)]["video"])
    epochs = [data[(0, e)]["video"] for e in range(4)]
    assert any(not torch.equal(epochs[0], v) for v in epochs[1:])
    plain = data[0]["video"]  # evaluation: no augmentation, just resized
    assert torch.equal(plain, VideoFolder(tmp_path, num_frames=4, frames_fps=10, image_size=16)[0]["video"])
    assert all(not torch.equal(plain, v) for v in epochs)


def test_grey_clips_use_luma(root: Path) -> None:
    rgb = VideoFolder(root, num_frames=2, frames_fps=10, image_size=8)[2]["video"]
    grey = VideoFolder(root, num_frames=2, frames_fps=10, image_size=8, channels=1)[2]["video"]
    assert grey.shape == (2, 1, 8, 8)
    expected = torch.einsum("tchw,c->thw", rgb, torch.from_numpy(LUMA))
    assert (grey[:, 0] - expected).abs().max() < 1e-5  # same pixels, weighted sum: float rounding only


def test_empty_class_folder_warns_and_keeps_its_index(root: Path) -> None:
    (root / "a2").mkdir()
    (root / "a2" / "readme.txt").write_text("no videos here")
    with pytest.warns(UserWarning, match=rf"'{root / 'a2'}' holds no videos.*stays class 1"):
        data = VideoFolder(root, frames_fps=10, image_size=8)
    assert data.classes == ["a", "a2", "b"] and [label for _, label in data.items] == [0, 0, 2]


@pytest.mark.parametrize("content", [b"", b"random"], ids=["zero-byte", "corrupt"])
def test_bad_video_file_fails_at_construction(root: Path, content: bytes) -> None:
    if content:
        content = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (root / "b" / "bad.mp4").write_bytes(content)
    with pytest.raises(VideoReadError, match=r"^unreadable video '.*b/bad\.mp4': ") as info:
        VideoFolder(root, frames_fps=10)
    assert "\n" not in str(info.value)


def test_frame_folder_gap_fails_at_construction(root: Path) -> None:
    (root / "b" / "f1" / "img_00003.jpg").unlink()
    with pytest.raises(VideoReadError, match=r"'.*b/f1': frame img_00003\.jpg is missing"):
        VideoFolder(root, frames_fps=10)


def test_missing_or_empty_roots_and_foreign_classes(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist; expected layout"):
        VideoFolder(tmp_path / "missing")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="holds no videos"), pytest.warns(UserWarning):
        VideoFolder(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match=r"has class folders \['b'\] that the train split lacks"):
        VideoFolder(root, frames_fps=10, classes=["a"])
    remapped = VideoFolder(root, frames_fps=10, classes=["x", "a", "b"], indices=[2, 0])
    assert [(p.name, label) for p, label in remapped.items] == [("f1", 2), ("v1.mp4", 1)]


def test_subset_reuses_the_probed_sources(root: Path) -> None:
    data = VideoFolder(root, num_frames=4, clip_mode="sliding", frames_fps=10, image_size=16)
    sub = data.subset([2, 0], augment=True)
    assert sub.sources[0] is data.sources[2] and sub.augment and not data.augment
    assert len(sub) == 4 + 8 and len(data) == 8 + 5 + 4
    assert sub[3]["video_id"] == "f1" and sub[4]["video_id"] == "v1"


def test_mkv_and_webm_files_count_as_videos(tmp_path: Path) -> None:
    frames = textured_frames(6, 16)
    write_video(tmp_path / "a" / "x.webm", frames, fps=6)
    write_video(tmp_path / "b" / "y.MKV", frames, fps=6)
    data = VideoFolder(tmp_path, num_frames=3, image_size=8)
    assert [p.name for p, _ in data.items] == ["x.webm", "y.MKV"] and len(data) == 2
    assert data[1]["video_id"] == "y" and data[1]["fps"] == 6.0
