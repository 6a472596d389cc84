"""``scripts/bench_toco_step.py``: a tiny run prints the table and the verdict and writes the JSON with every part;
bad input is one line and exit 2 with nothing written. Timings are printed, never asserted."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_toco_step", REPO / "scripts" / "bench_toco_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_every_part(bench, capsys, tmp_path) -> None:
    out_dir = tmp_path / "bench"
    assert bench.main(["--out", str(out_dir), "--batch-size", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    result = json.loads((out_dir / "bench_toco_step.json").read_text())
    assert set(bench.PARTS) <= set(result) and all(result[k] > 0 for k in bench.PARTS)
    assert result["ratio"] == pytest.approx(result["toco"] / result["plain"])
    assert result["setting"]["batch_size"] == 2 and result["setting"]["par_dilations"] == [1, 2, 4, 8]
    assert result["setting"]["setting"] == "shapes" and result["setting"]["image_size"] == 64
    assert result["target"] == 3.0 and result["target_met"] == (result["ratio"] <= 3.0)
    assert "| plain ms | toco ms | toco / plain | cam ms | pseudo_labels ms | ctc_views ms |" in out
    assert ("target <= 3x: met" in out) == result["target_met"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--batch-size", "0"], "batch-size, repeats and threads must be positive, got 0, 5 and 1"),
    (["--repeats", "0"], "batch-size, repeats and threads must be positive, got 16, 0 and 1"),
    (["--device", "nonsense"], "--device 'nonsense' is not usable here"),
    (["--setting", "coco"], "argument --setting: invalid choice: 'coco'"),
    (["--setting", "voc", "--repeats", "0"], "batch-size, repeats and threads must be positive, got 2, 0 and 1"),
])
def test_bad_input_is_a_usage_error_and_writes_nothing(bench, capsys, tmp_path, extra, message) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(["--out", str(tmp_path / "bench"), *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "bench").exists()


def test_out_that_is_a_file_is_a_usage_error(bench, capsys, tmp_path) -> None:
    target = tmp_path / "taken.json"
    target.write_text("{}")
    with pytest.raises(SystemExit) as info:
        bench.main(["--out", str(target)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"--out must be a folder, {target} is a file")
    assert target.read_text() == "{}"
