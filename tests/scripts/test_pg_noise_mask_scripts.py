"""``scripts/pg_noise_mask_demo.py --quick`` runs every arm end to end into a fresh run folder (table, JSON, both
PNGs); ``scripts/bench_pg_noise_mask.py`` prints both steps, their ratio and the state bytes; bad input is one line."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import load_script

TINY_BENCH = ["--backbone", "test_resnet", "--policy-trunk", "test_resnet", "--grid", "8", "--kernel-size", "3",
              "--sigma", "0.75", "--batch-size", "4", "--repeats", "2"]


pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_quick_demo_writes_a_run_folder_with_every_arm(tmp_path, capsys) -> None:
    demo = load_script("pg_noise_mask_demo")
    assert demo.main(["--out", str(tmp_path / "pg"), "--quick", "--no-progress"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "pg" / "run_000"
    result = json.loads((run / "pg_demo.json").read_text())
    assert [s["arm"] for s in result["summary"]] == ["plain", "random", "faithful"]
    assert result["settings"]["epochs"] == 1 and len(result["rows"]) == 3
    plain, random_arm, faithful = result["rows"]
    assert plain["noisy_acc"] is None and "alpha" not in plain
    assert random_arm["alpha"] == pytest.approx(1.0) and random_arm["beta"] == pytest.approx(1.0)
    for row in (random_arm, faithful):
        assert 0.3 < row["mask_mean"] < 0.7 and 0 < row["mask_std"] < 0.3 and 0 <= row["noisy_acc"] <= 1
    assert all(0 <= r["unseen_acc"] <= 1 and 0 <= r["pretrain_acc"] <= 1 for r in result["rows"])
    assert (run / "pg_demo_masks.png").is_file() and (run / "pg_demo_policy.png").is_file()
    assert re.search(r"^\| faithful \| [\d.]+ ± 0\.0000 \|", out, flags=re.M)


def test_demo_bad_geometry_is_one_line_and_a_failed_run_leaves_no_folder(tmp_path, capsys, monkeypatch) -> None:
    demo = load_script("pg_noise_mask_demo")
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path / "pg"), "--quick", "--kernel-size", "4"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and err == ["pg_noise_mask_demo: error: kernel_size must be a positive odd number, got 4"]
    assert not (tmp_path / "pg").exists()

    def crash(args, seed, out):
        (out / "plain_seed0").mkdir()
        raise RuntimeError("training diverged")

    monkeypatch.setattr(demo, "run_seed", crash)
    with pytest.raises(RuntimeError, match="training diverged"):
        demo.main(["--out", str(tmp_path / "pg"), "--quick"])
    assert list((tmp_path / "pg").iterdir()) == []


def test_bench_prints_both_steps_the_ratio_and_the_state(capsys) -> None:
    bench = load_script("bench_pg_noise_mask")
    assert bench.main(TINY_BENCH) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"step: median +[\d.]+ ms", out)) == 2
    assert float(re.search(r"alternating pairs: ([\d.]+)x", out)[1]) > 0
    state = dict(re.findall(r"^(plain|heating policy) +[\d.]+ +[\d.]+ +[\d.]+ +([\d.]+)$", out, flags=re.M))
    assert set(state) == {"plain", "heating policy"} and float(state["heating policy"]) > 0
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY_BENCH, "--grid", "64"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err == "bench_pg_noise_mask: error: grid 64 is larger than the image size 32"
