"""``VideoFolderDataModule``: split folders or a seeded split of VIDEOS (a video's clips stay in one
split), folders probed in the constructor, only training clips augmented, epoch-tagged training keys
giving the same batches with and without worker processes, ``plot`` drawing a clip."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch

from tests.data.video_files import write_video_classes
from visionkit.data.datamodules.video_folder import VideoFolderDataModule
from visionkit.data.errors import DatasetNotFoundError, VideoReadError

matplotlib.use("Agg")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two classes of five 20-frame videos at 10 fps: mp4 files and jpg frame folders."""
    videos = {"run": ["r0.mp4", "r1.mp4", "r2", "r3", "r4.mp4"], "walk": ["w0.mp4", "w1", "w2.mp4", "w3", "w4"]}
    return write_video_classes(tmp_path / "data", videos, num_frames=20, size=16)


def test_fraction_split_keeps_each_video_in_one_split(root: Path) -> None:
    dm = VideoFolderDataModule(
        str(root), num_frames=4, clip_mode="sliding", frames_fps=10, val_fraction=0.2, test_fraction=0.2, image_size=8
    )
    assert dm.num_classes == 2 and dm.in_channels == 3 and dm.classes == ["run", "walk"]
    splits = {s: dm.dataset(s) for s in ("train", "val", "test")}
    videos = {s: {p for p, _ in d.items} for s, d in splits.items()}
    assert [len(v) for v in videos.values()] == [6, 2, 2]
    assert len(videos["train"] | videos["val"] | videos["test"]) == 10  # 6 + 2 + 2: disjoint
    assert [len(d) for d in splits.values()] == [5 * len(d.items) for d in splits.values()]  # 20 frames: 5 windows
    clips = splits["val"]
    assert {clips[i]["path"] for i in range(len(clips))} == {str(p) for p in videos["val"]}
    assert splits["train"].augment is False and splits["val"].augment is False
    again = VideoFolderDataModule(str(root), frames_fps=10, val_fraction=0.2, test_fraction=0.2)
    assert [p for p, _ in again.dataset("val").items] == [p for p, _ in clips.items]  # seeded
    no_test = VideoFolderDataModule(str(root), frames_fps=10)
    assert no_test.dataset("test").items == no_test.dataset("val").items and len(no_test.dataset("val").items) == 2


def test_split_folders(tmp_path: Path) -> None:
    write_video_classes(tmp_path / "d" / "train", {"a": ["x.mp4", "y"], "b": ["z.mp4"]}, num_frames=8, size=16)
    write_video_classes(tmp_path / "d" / "val", {"a": ["v"], "b": []}, num_frames=8, size=16)
    with pytest.warns(UserWarning, match="holds no videos"):
        dm = VideoFolderDataModule(str(tmp_path / "d"), num_frames=4, frames_fps=10, augment=True, image_size=8)
    assert dm.num_classes == 2 and len(dm.dataset("train")) == 3 and len(dm.dataset("val")) == 1
    assert dm.dataset("test") is dm.dataset("val")
    assert dm.dataset("train").augment and not dm.dataset("val").augment
    write_video_classes(tmp_path / "e" / "train", {"a": ["x.mp4"]}, num_frames=4, size=16)
    with pytest.raises(DatasetNotFoundError, match=r"'.*e/val' does not exist \(train/ does\)"):
        VideoFolderDataModule(str(tmp_path / "e"))


def test_bad_input_fails_in_the_constructor(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels must be 1"):
        VideoFolderDataModule(str(root), channels=2)
    with pytest.raises(ValueError, match="val_fraction"):
        VideoFolderDataModule(str(root), val_fraction=0.7, test_fraction=0.3)
    with pytest.raises(ValueError, match="clip mode must be"):
        VideoFolderDataModule(str(root), clip_mode="centre")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        VideoFolderDataModule(str(tmp_path / "missing"))
    (root / "walk" / "w9.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"'.*w9\.mp4': file is empty"):
        VideoFolderDataModule(str(root), frames_fps=10)


def test_train_batches_match_across_worker_counts(root: Path) -> None:
    batches, later = [], []
    for workers in (0, 2):
        dm = VideoFolderDataModule(
            str(root), num_frames=4, frames_fps=10, augment=True, batch_size=4, num_workers=workers, image_size=8, seed=3
        )
        loader = dm.train_dataloader()
        batches.append(next(iter(loader)))
        loader.sampler.set_epoch(1)
        later.append(next(iter(loader)))
    assert torch.equal(later[0]["video"], later[1]["video"]) and torch.equal(later[0]["index"], later[1]["index"])
    j = int(later[0]["index"][0])
    assert not torch.equal(later[0]["video"][0], dm.dataset("train")[(j, 0)]["video"]), "epoch 1 draws new clips"
    first, second = batches
    assert first["video"].shape == (4, 4, 3, 8, 8) and first["label"].dtype == torch.int64
    assert torch.equal(first["index"], second["index"]) and torch.equal(first["video"], second["video"])
    assert first["path"] == second["path"] and first["clip_start"].tolist() == second["clip_start"].tolist()
    train = dm.dataset("train")
    i = int(first["index"][0])
    assert torch.equal(first["video"][0], train[(i, 0)]["video"])  # keys arrived tagged with epoch 0
    assert not torch.equal(first["video"][0], train[i]["video"])  # an untagged key would not augment


def test_val_batch_and_plot(root: Path) -> None:
    import matplotlib.pyplot as plt

    dm = VideoFolderDataModule(str(root), num_frames=3, frames_fps=10, batch_size=2, image_size=8, channels=1)
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (2, 3, 1, 8, 8) and batch["fps"].tolist() == [10.0, 10.0]
    assert len(batch["video_id"]) == 2 and all(isinstance(v, str) for v in batch["video_id"])
    fig = dm.plot(dm.dataset("val")[0])
    try:
        assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3 and fig._suptitle is not None
    finally:
        plt.close(fig)
