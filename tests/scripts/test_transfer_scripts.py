"""``scripts/hst_transfer.py`` and ``scripts/unipt_transfer.py``: bad options are one line before anything is
written, and a failed run leaves no folder. Their real runs (table, JSON, chart) are the slow effect tests."""

from __future__ import annotations

import pytest

from tests.helpers import load_script

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.mark.parametrize("name", ["hst_transfer", "unipt_transfer"])
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--arms", "nope"], "--arms ['nope'] not known"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--num-train", "-3"], "--num-train must be a positive integer, got -3"),
    ],
    ids=["arm", "epochs", "num-train"],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, name, args, words) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_script(name).main([*args, "--out", str(tmp_path / "demo")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(f"{name}: error: ") and words in err[0]
    assert not (tmp_path / "demo").exists()


def test_a_failed_demo_leaves_no_run_folder(tmp_path, monkeypatch) -> None:
    script = load_script("hst_transfer")

    def crash(out, **kwargs):
        (out / "hst").mkdir()
        raise RuntimeError("training diverged")

    monkeypatch.setattr(script, "segmentation_transfer", crash)
    with pytest.raises(RuntimeError, match="training diverged"):
        script.main(["--demo", "segmentation", "--out", str(tmp_path / "demo")])
    assert list((tmp_path / "demo").iterdir()) == []
