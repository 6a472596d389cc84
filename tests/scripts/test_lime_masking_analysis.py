"""``scripts/lime_masking_analysis.py``: every numeric option is range-checked (one line, exit 2,
nothing written), and a run that fails after the explanations started leaves no run folder."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.conftest import REPO
from visionkit.methods.layer_masking import LayerMaskingError, lime_analysis

sys.path.insert(0, str(REPO / "scripts"))
import lime_masking_analysis as script  # noqa: E402

SMALL = ["--num-images", "2", "--num-samples", "20", "--batch-size", "20", "--fills", "layer", "grey", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the script in-process; assert exit code 2 and exactly one stderr line, and return it."""
    code = script.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("lime_masking_analysis: error:")
    return err[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--num-images", "0"), ("--image-size", "0"), ("--image-size", "-3"), ("--n-segments", "0"),
     ("--n-segments", "1"), ("--compactness", "0"), ("--compactness", "nan"), ("--compactness", "-1"),
     ("--grid", "0"), ("--num-samples", "1"), ("--batch-size", "0"), ("--top-k", "0"), ("--seed", "-1"),
     ("--seed", str(2**32)), ("--blur-sigma", "-0.5"), ("--blur-sigma", "inf"), ("--num-classes", "0"),
     ("--num-images", "two")],
)
def test_out_of_range_option_is_one_line_and_writes_nothing(tmp_path, capsys, option: str, value: str) -> None:
    out = tmp_path / "lime"
    extra = ["--backbone", "test_resnet"] if option == "--num-classes" else []
    line = error_line(capsys, [*SMALL, *extra, "--segmentation", "grid", "--out", str(out), option, value])
    assert option in line and value in line, line
    assert not out.exists()


def test_grid_zero_no_longer_runs(tmp_path, capsys) -> None:
    """Before: ``--segmentation grid --grid 0`` exited 0 with one meaningless segment per image."""
    line = error_line(capsys, [*SMALL, "--segmentation", "grid", "--grid", "0", "--out", str(tmp_path / "o")])
    assert "--grid must be at least 1" in line


def test_help_still_exits_0(capsys) -> None:
    assert script.main(["--help"]) == 0
    assert "--n-segments" in capsys.readouterr().out


def test_lime_settings_check_their_ranges() -> None:
    for bad in ({"n_segments": 0}, {"grid": 0}, {"compactness": 0.0}, {"blur_sigma": float("nan")}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            lime_analysis.LimeSettings(**bad)
    with pytest.raises(ValueError, match="grid"):
        lime_analysis.segment_image(torch.rand(8, 8, 3).numpy(), "grid", grid=0)


class _FailSecondPanel:
    """``render_panel`` that draws the first panel (so something is already written), then fails."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.calls, self.real = error, 0, lime_analysis.render_panel

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            raise self.error
        return self.real(*args, **kwargs)


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("error", [LayerMaskingError("a masked forward failed"), KeyboardInterrupt()])
def test_a_run_failing_midway_leaves_no_run_folder(tmp_path, capsys, monkeypatch, error) -> None:
    out = tmp_path / "lime"
    (out / "run_000").mkdir(parents=True)
    (out / "run_000" / "summary.json").write_text("an earlier run")
    before = _snapshot(out)
    failing = _FailSecondPanel(error)
    monkeypatch.setattr(lime_analysis, "render_panel", failing)
    argv = [*SMALL, "--segmentation", "grid", "--grid", "8", "--out", str(out)]
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            script.main(argv)
    else:
        line = error_line(capsys, argv)
        assert "a masked forward failed" in line
    assert failing.calls == 2  # the failure came after the first panel was written
    assert sorted(p.name for p in out.iterdir()) == ["run_000"]  # no run_001, no staging folder left
    assert _snapshot(out) == before


def test_a_failing_run_removes_the_out_folder_it_created(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(lime_analysis, "render_panel", _FailSecondPanel(LayerMaskingError("late failure")))
    out = tmp_path / "new" / "lime"
    error_line(capsys, [*SMALL, "--segmentation", "grid", "--grid", "8", "--out", str(out)])
    assert not out.exists()


def test_a_good_run_is_published_as_the_next_run_folder(tmp_path, capsys) -> None:
    out = tmp_path / "lime"
    (out / "run_000").mkdir(parents=True)
    (out / "run_000" / "keep.txt").write_text("keep me")
    assert script.main([*SMALL, "--segmentation", "grid", "--grid", "8", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["run_000", "run_001"]
    assert (out / "run_000" / "keep.txt").read_text() == "keep me"
    assert {p.name for p in (out / "run_001").iterdir()} == {
        "panels", "segments.npz", "explanations.json", "summary.json", "summary.csv"}
    assert len(list((out / "run_001" / "panels").glob("*.png"))) == 2
    assert f"wrote {out / 'run_001'}" in capsys.readouterr().out


def test_a_checkpoint_alone_is_rebuilt_with_load_task(tmp_path, capsys) -> None:
    """``--ckpt`` alone: the task comes back through ``visionkit.core.checkpoints.load_task`` (no signature filtering)."""
    from visionkit.methods.layer_masking import LayerMaskingTask

    task = LayerMaskingTask(backbone="test_resnet", num_classes=4, image_size=32)
    ckpt = tmp_path / "lm.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, ckpt)
    out = tmp_path / "lime"
    assert script.main([*SMALL, "--ckpt", str(ckpt), "skimage:astronaut", "--segmentation", "grid", "--grid", "8",
                        "--out", str(out)]) == 0
    assert f"checkpoint {ckpt}" in capsys.readouterr().out
    assert len(list((out / "run_000" / "panels").glob("*.png"))) == 1
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    line = error_line(capsys, [*SMALL, "--ckpt", str(tmp_path / "bad.ckpt"), "skimage:astronaut", "--out", str(out)])
    assert "bad.ckpt" in line
