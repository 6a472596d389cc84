"""Run folders of ``visionkit``: concurrent runs, failed runs, resumed runs, explicit versions, the end-of-fit summary."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import cli_error_line, epoch_values, read_metrics, run_dirs
from visionkit.cli import main
from visionkit.utils.runs import claim_version_dir

TINY = str(REPO / "tests" / "conf" / "classification.yaml")
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
         "--trainer.enable_progress_bar", "false"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _lr_of(run: Path) -> tuple[float, float, float]:
    """The lr recorded in a run's config.yaml, hparams.yaml and last.ckpt."""
    config = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["lr"]
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())["lr"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return float(config), float(hparams), float(ckpt["hyper_parameters"]["lr"])


def test_claims_racing_in_threads_get_distinct_folders(tmp_path: Path) -> None:
    got: list[Path] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        got.append(claim_version_dir(tmp_path, "race"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in got) == [f"version_{i}" for i in range(8)]


def test_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    lrs = (1.0e-3, 3.0e-3, 1.0e-2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "visionkit", "fit", "--config", TINY, *SHORT, "--model.init_args.lr", str(lr)],
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for lr in lrs
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-1500:] for e in errors]
    runs = run_dirs(tmp_path / "logs")
    assert len(runs) == 3
    by_lr = {}
    for run in runs:
        config_lr, hparams_lr, ckpt_lr = _lr_of(run)
        assert config_lr == hparams_lr == ckpt_lr, run
        assert epoch_values(read_metrics(run), "val_acc").keys() == {0}, f"{run}: metrics.csv mixes runs"
        assert len(list(run.glob("events.out.tfevents.*"))) == 1, f"{run}: TensorBoard events of several runs"
        by_lr[config_lr] = run
    assert sorted(by_lr) == sorted(lrs)


@pytest.mark.parametrize(
    "args",
    [
        ["--model.init_args.backbone", "resnet_does_not_exist"],  # fails while the task is built
        ["--data.num_classes", "12"],  # fails while the datamodule is built
    ],
    ids=["bad-backbone", "bad-data-value"],
)
def test_run_failing_at_setup_leaves_no_folder(capsys: pytest.CaptureFixture, args: list[str]) -> None:
    cli_error_line(capsys, ["fit", "--config", TINY, *SHORT, *args])
    assert run_dirs() == []
    assert not list(Path("logs").rglob("version_*"))


def test_run_crashing_before_any_result_leaves_no_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "fail.yaml"
    cfg.write_text("trainer:\n  callbacks:\n    - class_path: tests.helpers.FailAt\n      init_args: {epoch: 0, batch: 0}\n")
    with pytest.raises(RuntimeError, match="FailAt"):
        main(["fit", "--config", TINY, "--config", str(cfg), *SHORT])
    assert run_dirs() == []


def test_run_crashing_after_a_checkpoint_is_kept(tmp_path: Path) -> None:
    cfg = tmp_path / "fail.yaml"
    cfg.write_text("trainer:\n  callbacks:\n    - class_path: tests.helpers.FailAt\n      init_args: {epoch: 1, batch: 0}\n")
    with pytest.raises(RuntimeError, match="FailAt"):
        main(["fit", "--config", TINY, "--config", str(cfg), *SHORT, "--trainer.max_epochs", "2"])
    (run,) = run_dirs()
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_resumed_run_continues_in_its_own_folder(tmp_path: Path) -> None:
    kill_cfg = tmp_path / "kill.yaml"
    kill_cfg.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.KillAt\n      init_args: {epoch: 1, batch: 1}\n"
    )
    args = ["fit", "--config", TINY, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    killed = subprocess.run(
        [sys.executable, "-m", "visionkit", *args, "--config", str(kill_cfg)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = run_dirs()
    before = read_metrics(run)
    assert sorted(epoch_values(before, "val_acc")) == [0]
    config_before = (run / "config.yaml").read_text()

    main([*args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])

    assert run_dirs() == [run], "the resumed run must not start a new folder"
    rows = read_metrics(run)
    assert sorted(epoch_values(rows, "val_acc")) == [0, 1]
    assert len([r for r in rows if r.get("val_acc")]) == 2, "a validation row is duplicated"
    steps = [int(r["step"]) for r in rows if r.get("train_loss_step")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), f"train steps repeat or go back: {steps}"
    kept = [r for r in before if int(r["step"]) < 3]
    assert [r["step"] for r in rows[: len(kept)]] == [r["step"] for r in kept], "rows of the first part were lost"
    assert (run / "config.yaml").read_text() == config_before
    assert (run / "config_resume_1.yaml").is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]


def test_explicit_version_of_an_earlier_run_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    cfg = tmp_path / "named.yaml"
    cfg.write_text(
        "trainer:\n  logger:\n    - class_path: lightning.pytorch.loggers.CSVLogger\n"
        "      init_args: {save_dir: logs, name: mine, version: first}\n"
    )
    main(["fit", "--config", TINY, "--config", str(cfg), *SHORT])
    run = Path("logs/mine/first")
    config = (run / "config.yaml").read_text()
    metrics = (run / "metrics.csv").read_text()
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--config", str(cfg), *SHORT, "--model.init_args.lr", "0.1"])
    assert "first" in line and "earlier run" in line
    assert (run / "config.yaml").read_text() == config and (run / "metrics.csv").read_text() == metrics


def test_fit_ends_with_run_folder_and_final_metrics(capsys: pytest.CaptureFixture) -> None:
    main(["fit", "--config", TINY, *SHORT])
    out = capsys.readouterr().out
    (run,) = run_dirs()
    assert f"Run folder: {run}" in out
    assert "tensorboard --logdir logs" in out
    val_acc = [float(r["val_acc"]) for r in read_metrics(run) if r.get("val_acc")][-1]
    assert f"val_acc={val_acc:.4g}" in out
    assert f"Best checkpoint: {run / 'checkpoints'}" in out
