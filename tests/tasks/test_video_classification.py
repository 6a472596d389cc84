"""``VideoClassificationTask``: per-frame timm backbone, clip probability = mean of the frame softmaxes;
trained end to end through ``visionkit fit`` on generated clips and on real (generated) video files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.data.video_files import write_video_classes
from tests.helpers import epoch_values, last_value, read_metrics, run_dirs
from visionkit.cli import main
from visionkit.tasks import VideoClassificationTask

TINY_VIDEO = str(REPO / "tests" / "conf" / "video.yaml")


def _task(**kwargs) -> VideoClassificationTask:
    torch.manual_seed(0)
    return VideoClassificationTask(backbone="test_resnet", num_classes=5, image_size=24, **kwargs).eval()


def test_clip_probabilities_are_the_mean_of_the_frame_softmaxes() -> None:
    task = _task()
    video = torch.rand(2, 3, 3, 24, 24)
    with torch.no_grad():
        frame_probs = task.model(video.flatten(0, 1)).softmax(-1).view(2, 3, 5)
        clip = task(video)
    torch.testing.assert_close(clip.exp(), frame_probs.mean(1), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # one frame repeated: the clip is that frame
        still = task(video[:, :1].expand(-1, 4, -1, -1, -1))
    torch.testing.assert_close(still.exp(), frame_probs[:, 0], rtol=1e-5, atol=1e-6)


def test_loss_predict_and_panel() -> None:
    task = _task()
    batch = {"video": torch.rand(3, 4, 3, 24, 24), "label": torch.tensor([0, 4, 2]), "index": torch.arange(3)}
    out = task.compute_loss(batch, "train")
    expected = -out["preds"].gather(1, batch["label"][:, None]).mean()
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    assert all(p.grad is not None for p in task.model.parameters() if p.requires_grad)
    pred = task.predict_step(batch, 0)
    torch.testing.assert_close(pred["probs"].sum(-1), torch.ones(3))
    assert torch.equal(pred["index"], batch["index"])
    panel = task.visualize(batch, None)["predictions"]
    assert panel.shape[:2] == (3, 3) and panel.shape[-1] == 4 * panel.shape[-2]  # 4 frames side by side


def test_frames_that_are_not_clips_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        _task()(torch.rand(2, 3, 24, 24))


def test_fit_on_moving_digits_logs_accuracy_and_a_frame_strip_panel() -> None:
    main(["fit", "--config", TINY_VIDEO])
    run = run_dirs()[-1]
    rows = read_metrics(run)
    assert epoch_values(rows, "val_acc") and epoch_values(rows, "train_loss_epoch")
    assert list((run / "images" / "val").glob("*predictions.png"))


def _video_config(tmp_path: Path) -> Path:
    root = write_video_classes(tmp_path / "videos", {"left": [f"l{i}.mp4" for i in range(6)], "right": [f"r{i}.mp4" for i in range(6)]})
    config = tmp_path / "video_files.yaml"
    config.write_text(
        (REPO / "tests" / "conf" / "video.yaml").read_text().split("data:")[0]
        + "data:\n  class_path: VideoFolderDataModule\n  init_args:\n"
        f"    root: {root}\n    num_frames: 4\n    clip_mode: random\n    augment: true\n    val_fraction: 0.34\n"
        "    batch_size: 4\n    num_workers: 2\n    image_size: 24\n"
    )
    return config


def test_killed_video_run_resumes_to_identical_metrics(tmp_path: Path) -> None:
    """Random clip positions and augmentations come from (seed, index, epoch), in 2 worker processes."""
    config = _video_config(tmp_path)
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2"])
    reference = read_metrics(run_dirs()[-1])

    kill = tmp_path / "kill.yaml"
    kill.write_text("trainer:\n  callbacks:\n    - class_path: tests.helpers.KillAt\n      init_args: {epoch: 1, batch: 0}\n")
    killed = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", "--config", str(config), "--config", str(kill), "--trainer.max_epochs", "2"],
        cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    interrupted = run_dirs()[-1]
    assert 1 not in epoch_values(read_metrics(interrupted), "val_acc")

    main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path", str(interrupted / "checkpoints" / "last.ckpt")])
    rows = read_metrics(interrupted)
    assert sorted(epoch_values(rows, "val_acc")) == [0, 1]
    for key in ("val_loss", "val_acc", "train_loss_epoch"):
        assert last_value(rows, key) == pytest.approx(last_value(reference, key), abs=1e-6), key


@pytest.mark.slow  # the shipped config, a real run: about 2.5 min on 2 CPU cores
def test_moving_digits_config_reaches_90_percent() -> None:
    main(["fit", "--config", str(REPO / "configs" / "video" / "moving_digits.yaml"), "--trainer.enable_progress_bar", "false"])
    (run,) = run_dirs()
    accuracy = epoch_values(read_metrics(run), "val_acc")
    assert sorted(accuracy) == [0, 1, 2]
    assert accuracy[2] >= 0.90, accuracy
    assert list((run / "images" / "val").glob("*predictions.png"))


@pytest.mark.slow  # two processes: about 50 s on 2 CPU cores
@pytest.mark.xdist_group("ddp")  # 2-process runs one at a time (.ci/run: --dist loadgroup)
def test_ddp_two_processes_train_on_disjoint_epoch_tagged_shards(tmp_path: Path) -> None:
    """Under DDP the (index, epoch)-tagged sampler is a DistributedSampler: Lightning keeps it, each rank
    sees half of the clips, and validation metrics are logged once per epoch."""
    out = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", "--config", TINY_VIDEO, "--trainer.strategy", "ddp",
         "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "logs")
    rows = read_metrics(run)
    assert sorted(epoch_values(rows, "val_acc")) == [0, 1]
    # 48 clips / 2 ranks / batch 8 = 3 steps per epoch, 2 epochs
    assert max(int(r["step"]) for r in rows) == 5
