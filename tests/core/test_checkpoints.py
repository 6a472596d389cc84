"""``read_checkpoint`` and ``load_task``: a visionkit task back from its checkpoint, safely, or one error line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionkit.core.checkpoints import CheckpointError, load_task, read_checkpoint
from visionkit.methods.unipt import UniPTTask
from visionkit.tasks import ClassificationTask


def _save(task, path: Path, class_path: str | None) -> Path:
    hparams = dict(task.hparams)
    if class_path:
        hparams["_class_path"] = class_path
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, path)
    return path


@pytest.fixture
def task() -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(backbone="test_resnet", num_classes=3, image_size=32, finetune="linear")


def test_round_trip_restores_class_hparams_and_weights(task, tmp_path):
    path = _save(task, tmp_path / "a.ckpt", "visionkit.tasks.classification.ClassificationTask")
    loaded = load_task(path)
    assert type(loaded) is ClassificationTask and loaded.hparams.finetune == "linear" and not loaded.training
    for (name, a), (_, b) in zip(task.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # a copy of the same tensors


def test_task_class_is_required_without_a_recorded_one_and_checked_with_one(task, tmp_path):
    bare = _save(task, tmp_path / "bare.ckpt", None)
    with pytest.raises(CheckpointError, match="records no task class"):
        load_task(bare)
    assert isinstance(load_task(bare, ClassificationTask), ClassificationTask)
    recorded = _save(task, tmp_path / "rec.ckpt", "visionkit.tasks.classification.ClassificationTask")
    with pytest.raises(CheckpointError, match="is a ClassificationTask checkpoint; expected a UniPTTask"):
        load_task(recorded, UniPTTask)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"", "not a readable Lightning checkpoint"),
     (b"\x00\x13garbage" * 50, "not a readable Lightning checkpoint"),
     ("truncated", "not a readable Lightning checkpoint"), ("no_state", "holds no Lightning 'state_dict'")],
)
def test_bad_files_are_one_line_errors_naming_the_file(task, tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        _save(task, path, None)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "no_state":
        torch.save({"epoch": 1}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_foreign_class_paths_and_mismatched_weights_are_refused(task, tmp_path):
    with pytest.raises(CheckpointError, match="only visionkit tasks"):
        load_task(_save(task, tmp_path / "os.ckpt", "os.system"))
    with pytest.raises(CheckpointError, match="not a visionkit task"):
        load_task(_save(task, tmp_path / "t.ckpt", "visionkit.tasks.classification.BaseTuner"))
    wide = _save(task, tmp_path / "w.ckpt", "visionkit.tasks.classification.ClassificationTask")
    with pytest.raises(CheckpointError, match="size mismatch"):
        load_task(wide, num_classes=5)
