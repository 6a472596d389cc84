"""The shared training loop: artefacts, checkpoint reload, determinism, kill-and-resume, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import epoch_values, last_value, read_metrics, run_dirs
from visionkit.cli import main

TINY = str(REPO / "tests" / "conf" / "classification.yaml")


def _fit(*extra: str) -> Path:
    before = set(run_dirs())
    main(["fit", "--config", TINY, *extra])
    (new,) = set(run_dirs()) - before
    return new


def test_fit_writes_artefacts_and_checkpoint_reloads() -> None:
    from visionkit.data.datamodules import SyntheticShapesDataModule
    from visionkit.tasks import ClassificationTask

    run = _fit()
    rows = read_metrics(run)
    assert {"val_loss", "val_acc", "train_loss_epoch"} <= set(rows[0])
    assert (run / "config.yaml").is_file() and (run / "hparams.yaml").is_file()
    pngs = sorted((run / "images" / "val").glob("*.png"))
    assert pngs, "no prediction panel written"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"

    batch = next(iter(SyntheticShapesDataModule(num_train=8, num_val=8, num_test=8, batch_size=8).test_dataloader()))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    task = ClassificationTask.load_from_checkpoint(run / "checkpoints" / "last.ckpt").eval()
    fresh = ClassificationTask(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}).eval()
    fresh.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        a, b = task(batch["image"]), fresh(batch["image"])
    assert torch.equal(a, b)
    # the reloaded weights are the trained ones, not a fresh initialisation
    untrained = ClassificationTask(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}).eval()
    with torch.no_grad():
        assert not torch.equal(a, untrained(batch["image"]))


def test_validate_and_test_from_checkpoint() -> None:
    run = _fit("--trainer.max_epochs", "1")
    ckpt = str(run / "checkpoints" / "last.ckpt")
    main(["validate", "--config", TINY, "--ckpt_path", ckpt])
    main(["test", "--config", TINY, "--ckpt_path", ckpt])
    test_run = run_dirs()[-1]
    assert "test_acc" in read_metrics(test_run)[0]
    assert list((test_run / "images" / "test").glob("*.png"))


def test_same_seed_same_metrics() -> None:
    first = read_metrics(_fit())
    second = read_metrics(_fit())
    for key in ("val_loss", "val_acc", "train_loss_epoch"):
        assert epoch_values(first, key) == epoch_values(second, key)
    other = read_metrics(_fit("--seed_everything", "1", "--trainer.max_epochs", "1"))
    assert epoch_values(other, "train_loss_epoch")[0] != epoch_values(first, "train_loss_epoch")[0]


def test_killed_run_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    reference = read_metrics(_fit("--trainer.max_epochs", "3"))

    kill_cfg = tmp_path / "kill.yaml"
    kill_cfg.write_text(
        "trainer:\n  max_epochs: 3\n  callbacks:\n    - class_path: tests.helpers.KillAt\n"
        "      init_args: {epoch: 2, batch: 2}\n"
    )
    # the killed run computes epochs 0-1 in a subprocess and the resumed one epoch 2 here: same thread count
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    killed = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", "--config", TINY, "--config", str(kill_cfg)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    interrupted = run_dirs()[-1]
    assert 2 not in epoch_values(read_metrics(interrupted), "val_acc")

    main(["fit", "--config", TINY, "--trainer.max_epochs", "3", "--ckpt_path", str(interrupted / "checkpoints" / "last.ckpt")])
    rows = read_metrics(interrupted)  # the resumed run continues in the interrupted run's folder
    assert sorted(epoch_values(rows, "val_acc")) == [0, 1, 2], "resume did not continue at epoch 2"
    assert int(rows[-1]["step"]) == int(reference[-1]["step"])
    for key in ("val_loss", "val_acc", "train_loss_epoch"):
        assert last_value(rows, key) == pytest.approx(last_value(reference, key), abs=1e-6), key


def test_ddp_two_processes_on_cpu(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", "--config", TINY, "--trainer.strategy", "ddp",
         "--trainer.devices", "2", "--trainer.accelerator", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "logs")
    rows = read_metrics(run)
    val_rows = [r for r in rows if r.get("val_acc")]
    assert [int(r["epoch"]) for r in val_rows] == [0, 1], "validation metrics must be logged once per epoch"
    # 96 samples / 2 ranks / batch 16 = 3 steps per epoch
    assert max(int(r["step"]) for r in rows) == 5


def test_build_trainer_uses_the_same_defaults(tmp_path: Path) -> None:
    from visionkit.core.trainer import build_trainer
    from visionkit.data.datamodules import SyntheticShapesDataModule
    from visionkit.tasks import ClassificationTask

    trainer = build_trainer(
        name="demo", monitor="val_acc", mode="max", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
        enable_progress_bar=False, accelerator="cpu",
    )
    task = ClassificationTask(backbone="test_resnet", num_classes=4)
    trainer.fit(task, SyntheticShapesDataModule(num_train=32, num_val=16, num_test=16, batch_size=8))
    assert Path(trainer.log_dir) == Path("logs/demo/version_0")
    assert trainer.checkpoint_callback.monitor == "val_acc"
    assert "val_acc" in read_metrics(trainer.log_dir)[0]
    assert list(Path(trainer.log_dir).glob("events.out.tfevents.*"))
