"""The ``visionkit`` command: help, version, every shipped config, config errors and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import cli_error_line
from visionkit.cli import main

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
#: configs for real data and weights (first line ``# template: ...``): parsed here, run by users
TEMPLATES = [c for c in CONFIGS if c.read_text().startswith("# template:")]
RUNNABLE = [c for c in CONFIGS if c not in TEMPLATES]
TINY = str(REPO / "tests" / "conf" / "classification.yaml")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_help_and_version_import_nothing_heavy() -> None:
    code = (
        "import sys; from visionkit.cli import main; main(['--help']); main(['--version']);"
        "print(sorted(m for m in ('torch', 'lightning', 'timm', 'diffusers', 'open_clip', 'lime', 'peft') if m in sys.modules))"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "fit" in out.stdout and "predict" in out.stdout
    assert "visionkit 0." in out.stdout
    assert out.stdout.strip().endswith("[]")


def test_cli_import_does_not_load_optional_libraries() -> None:
    out = _python(
        "import sys, visionkit.cli; visionkit.cli._register_classes();"
        "print(sorted(m for m in ('diffusers', 'open_clip', 'lime', 'peft') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_python_dash_m_version() -> None:
    out = subprocess.run([sys.executable, "-m", "visionkit", "--version"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.startswith("visionkit ")


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_config_prints_and_reparses(config: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(printed), "--print_config"])
    assert exit_info.value.code in (0, None)


@pytest.mark.parametrize("config", RUNNABLE, ids=[str(c.relative_to(REPO)) for c in RUNNABLE])
def test_config_runs_a_tiny_step(config: Path) -> None:
    main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])


@pytest.mark.parametrize("config", TEMPLATES, ids=[str(c.relative_to(REPO)) for c in TEMPLATES])
def test_template_config_without_its_data_is_one_line(config: Path, capsys: pytest.CaptureFixture) -> None:
    """Offline, a template stops at its placeholder data root with one line (before any weights download)."""
    line = cli_error_line(capsys, ["fit", "--config", str(config), "--trainer.accelerator", "cpu"])
    assert "does not exist" in line and "expected layout" in line, line


def test_config_typo_is_a_parse_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--model.init_args.learning_rat", "0.1"])
    assert exit_info.value.code == 2
    assert "learning_rat" in capsys.readouterr().err


def test_missing_image_folder_root(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = cli_error_line(
        capsys, ["fit", "--config", TINY, "--data", "ImageFolderDataModule", "--data.root", str(tmp_path / "nope")]
    )
    assert str(tmp_path / "nope") in line and "expected layout" in line


def test_empty_image_folder_root(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--data", "ImageFolderDataModule", "--data.root", str(tmp_path / "empty")])
    assert "holds no images" in line


def test_unreadable_image(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from tests.data.files import write_image_folder

    root = write_image_folder(tmp_path / "imgs")
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"not a png")
    line = cli_error_line(
        capsys,
        ["fit", "--config", TINY, "--data", "ImageFolderDataModule", "--data.root", str(root), "--data.image_size", "32",
         "--data.val_fraction", "0.0", "--trainer.max_epochs", "1"],
    )
    assert str(bad) in line and "unreadable image" in line


def test_unknown_backbone(capsys: pytest.CaptureFixture) -> None:
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--model.init_args.backbone", "resnet_does_not_exist"])
    assert "resnet_does_not_exist" in line and "timm" in line


def test_pretrained_offline_suggests_checkpoint_path(capsys: pytest.CaptureFixture) -> None:
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--model.init_args.backbone", "resnet18", "--model.init_args.pretrained", "true"])
    assert "checkpoint_path" in line and "resnet18" in line


def test_missing_checkpoint_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--model.init_args.checkpoint_path", str(tmp_path / "w.safetensors")])
    assert str(tmp_path / "w.safetensors") in line


def test_bad_value_is_one_line(capsys: pytest.CaptureFixture) -> None:
    line = cli_error_line(capsys, ["fit", "--config", TINY, "--data.num_classes", "12"])
    assert "num_classes" in line


def test_console_script_exit_code(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", "--config", TINY, "--data", "ImageFolderDataModule",
         "--data.root", str(tmp_path / "missing")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("visionkit: error: ImageFolder root")
