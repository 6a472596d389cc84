"""One-line errors of ``visionkit``: config typos, linked values that conflict with the data, bad ``--ckpt_path``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import cli_error_line, run_dirs
from visionkit.cli import cli, main

TINY = str(REPO / "tests" / "conf" / "classification.yaml")
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false"]


def _one_line_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """The error line of a run that must stop with exit 2 and print nothing else on stderr (no usage)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("visionkit: error: "), lines[:5]
    return lines[0]


# ---- config typos ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "yaml_text", "typo", "suggestion"),
    [
        (["--trainer.max_epoch", "1"], None, "trainer.max_epoch", "trainer.max_epochs"),
        ([], "trainer:\n  max_epoch: 1\n", "trainer.max_epoch", "trainer.max_epochs"),
        (["--checkpoint.save_top", "2"], None, "checkpoint.save_top", "checkpoint.save_top_k"),
        (["--model.init_args.finetun", "full"], None, "model.init_args.finetun", "model.init_args.finetune"),
        ([], "model:\n  init_args:\n    warmup_epoch: 1\n", "model.init_args.warmup_epoch", "model.init_args.warmup_epochs"),
        (["--data.num_trian", "8"], None, "data.init_args.num_trian", "data.init_args.num_train"),
    ],
    ids=["cli-trainer", "yaml-trainer", "cli-callback", "cli-model", "yaml-model", "cli-data"],
)
def test_config_typo_is_one_line_with_a_suggestion(
    capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], yaml_text: str | None, typo: str, suggestion: str
) -> None:
    if yaml_text is not None:
        (tmp_path / "typo.yaml").write_text(yaml_text)
        args = ["--config", str(tmp_path / "typo.yaml")]
    line = _one_line_error(capsys, ["fit", "--config", TINY, *args])
    assert f"unknown option '{typo}'" in line
    assert f"did you mean '{suggestion}'" in line


def test_wrong_value_type_is_one_line(capsys: pytest.CaptureFixture) -> None:
    line = _one_line_error(capsys, ["fit", "--config", TINY, "--model.init_args.lr", "fast"])
    assert "model.init_args.lr" in line and "float" in line and "'fast'" in line


# ---- linked data attributes -------------------------------------------------------------------------


@pytest.fixture
def two_classes(tmp_path: Path) -> list[str]:
    """CLI arguments for an ImageFolderDataModule of 2 classes x 4 RGB PNGs at 32 px (written here)."""
    from PIL import Image

    root = tmp_path / "imgs"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (24, 24), (60 + 120 * c, 30 * i, 90)).save(root / name / f"{i}.png")
    return ["--data", "ImageFolderDataModule", "--data.root", str(root), "--data.image_size", "32",
            "--data.batch_size", "4", "--data.val_fraction", "0.25"]


@pytest.mark.parametrize(("attr", "given", "data_value"), [("num_classes", 5, 2), ("in_channels", 1, 3), ("image_size", 64, 32)])
def test_explicit_linked_value_that_conflicts_is_an_error(
    capsys: pytest.CaptureFixture, two_classes: list[str], attr: str, given: int, data_value: int
) -> None:
    line = cli_error_line(capsys, ["fit", "--config", TINY, *two_classes, f"--model.init_args.{attr}", str(given)])
    assert f"{attr}={given}" in line and f"{attr}={data_value}" in line
    assert run_dirs() == [], "the failed run left a run folder"


def test_conflicting_value_from_a_config_file_is_an_error(
    capsys: pytest.CaptureFixture, tmp_path: Path, two_classes: list[str]
) -> None:
    (tmp_path / "head.yaml").write_text("model:\n  init_args:\n    num_classes: 5\n")
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--config", str(tmp_path / "head.yaml"), *two_classes])
    assert "num_classes=5" in line and "num_classes=2" in line


def test_explicit_linked_value_equal_to_the_data_is_fine(two_classes: list[str]) -> None:
    built = cli(["--config", TINY, *two_classes, "--model.init_args.num_classes", "2"], run=False)
    assert built.model.hparams.num_classes == 2
    assert built.model.model.get_classifier().out_features == 2


# ---- --ckpt_path ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_class_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a 1-batch ClassificationTask run on 2-class SyntheticShapes (the TINY config has 4)."""
    folder = tmp_path_factory.mktemp("ckpt_run")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        main(["fit", "--config", TINY, *SHORT, "--data.num_classes", "2"])
    finally:
        os.chdir(cwd)
    (run,) = run_dirs(folder / "logs")
    return run / "checkpoints" / "last.ckpt"


def _bad_checkpoint(kind: str, good: Path, folder: Path) -> Path:
    """Write a checkpoint file of one kind of defect."""
    path = folder / f"{kind}.ckpt"
    raw = good.read_bytes()
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "random":
        noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        path.write_bytes(bytes(noise.tolist()))
    elif kind == "weights-only":
        torch.save(torch.load(good, weights_only=True)["state_dict"], path)
    elif kind == "other-task":
        # the same file relabelled as a LayerMaskingTask checkpoint (what LightningCLI stores in `_class_path`)
        ckpt = torch.load(good, weights_only=True)
        ckpt["hyper_parameters"]["_class_path"] = "visionkit.methods.layer_masking.LayerMaskingTask"
        torch.save(ckpt, path)
    elif kind == "head-size":
        return good
    return path


@pytest.mark.parametrize(
    ("kind", "subcommand", "expected"),
    [
        ("missing", "fit", "does not exist"),
        ("empty", "fit", "not a readable Lightning checkpoint"),
        ("truncated", "test", "not a readable Lightning checkpoint"),
        ("random", "validate", "not a readable Lightning checkpoint"),
        ("weights-only", "fit", "holds no Lightning 'state_dict'"),
        ("other-task", "fit", "holds a LayerMaskingTask checkpoint, but the config's model is ClassificationTask"),
        ("head-size", "fit", "num_classes=2 (the data gives 4)"),
        ("head-size", "test", "size mismatch"),
    ],
)
def test_bad_checkpoint_is_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, two_class_ckpt: Path, kind: str, subcommand: str, expected: str
) -> None:
    path = _bad_checkpoint(kind, two_class_ckpt, tmp_path)
    line = cli_error_line(capsys, [subcommand, "--config", TINY, *SHORT, "--ckpt_path", str(path)])
    assert f"'{path}'" in line and expected in line
    assert run_dirs() == [], "the failed run left a run folder"


def test_a_checkpoint_never_chooses_what_gets_imported(tmp_path: Path) -> None:
    """A foreign ``_class_path`` is refused as another task without importing its module."""
    import sys

    from visionkit.cli import _check_task
    from visionkit.core.checkpoints import CheckpointError, CheckpointInfo

    assert "this" not in sys.modules  # the stdlib module that prints the Zen of Python when imported
    ckpt = CheckpointInfo(tmp_path / "x.ckpt", "this.Anything", {}, {}, None, "--ckpt_path")
    with pytest.raises(CheckpointError, match="holds a Anything checkpoint, but the config's model is ClassificationTask"):
        _check_task(ckpt, "visionkit.tasks.ClassificationTask")
    assert "this" not in sys.modules


# ---- bad video data ------------------------------------------------------------------------------


def _video_tree(root: Path) -> Path:
    from tests.data.video_files import write_video_classes

    return write_video_classes(root, {"a": ["a0.mp4", "a1"], "b": ["b0.mp4", "b1"]}, num_frames=8)


def _tal_files(root: Path, first_segment: tuple[float, float], with_files: bool = True) -> Path:
    from tests.data.tal_files import video_entry, write_activitynet_json
    from tests.data.video_files import moving_frames, write_video

    database = {
        "vid_ok": video_entry(2.0, "training", [(0.2, 1.0, "jump")]),
        "vid_bad": video_entry(2.0, "training", [(0.1, 0.5, "jump"), (*first_segment, "run")]),
        "vid_val": video_entry(2.0, "validation", [(0.5, 1.5, "run")]),
    }
    for vid in database if with_files else ("vid_ok", "vid_val"):
        write_video(root / "videos" / f"{vid}.mp4", moving_frames(20, 32), 10)
    return write_activitynet_json(root / "annotations.json", database)


def _fit_video(data_yaml: str, tmp_path: Path) -> list[str]:
    config = tmp_path / "data.yaml"
    config.write_text(data_yaml)
    return ["fit", "--config", str(REPO / "tests" / "conf" / "video.yaml"), "--config", str(config), *SHORT]


def test_corrupt_and_empty_video_files_are_one_line_naming_the_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root = _video_tree(tmp_path / "clips")
    (root / "a" / "broken.mp4").write_bytes(os.urandom(2048))
    args = _fit_video(f"data:\n  class_path: VideoFolderDataModule\n  init_args:\n    root: {root}\n    num_frames: 4\n", tmp_path)
    line = _one_line_error(capsys, args)
    assert "broken.mp4" in line
    (root / "a" / "broken.mp4").unlink()
    (root / "b" / "empty.mp4").write_bytes(b"")
    line = _one_line_error(capsys, args)
    assert "empty.mp4" in line
    assert not run_dirs(), "a run that failed on its data must leave no run folder"


def test_frames_folder_with_a_gap_is_one_line_naming_the_missing_frame(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root = _video_tree(tmp_path / "clips")
    (root / "b" / "b1" / "img_00004.jpg").unlink()
    args = _fit_video(f"data:\n  class_path: VideoFolderDataModule\n  init_args:\n    root: {root}\n    num_frames: 4\n", tmp_path)
    line = _one_line_error(capsys, args)
    assert "b1" in line and "img_00004.jpg" in line
    assert not run_dirs()


@pytest.mark.parametrize(
    ("segment", "with_files", "expected"),
    [((1.5, 1.2), True, ("vid_bad", "annotation 1")), ((1.5, 2.6), True, ("vid_bad", "annotation 1", "2.6")),
     ((1.2, 1.5), False, ("vid_bad", "has no video"))],
    ids=["ends-before-start", "past-duration", "no-video-file"],
)
def test_bad_temporal_annotations_are_one_line_naming_the_video(
    capsys: pytest.CaptureFixture, tmp_path: Path, segment: tuple[float, float], with_files: bool, expected: tuple[str, ...]
) -> None:
    annotations = _tal_files(tmp_path, segment, with_files)
    args = _fit_video(
        "data:\n  class_path: TemporalActionDataModule\n  init_args:\n"
        f"    annotation_file: {annotations}\n    video_root: {tmp_path / 'videos'}\n    num_frames: 4\n", tmp_path
    )
    line = _one_line_error(capsys, args)
    for word in expected:
        assert word in line, line
    assert not run_dirs()
