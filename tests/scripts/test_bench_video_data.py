"""``scripts/bench_video_data.py`` runs its three arms and prints clips/s for each and the worker speed-up."""

from __future__ import annotations

import importlib.util
import re

from tests.conftest import REPO


def test_bench_prints_a_rate_per_arm(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_video_data", REPO / "scripts" / "bench_video_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--batches", "2", "--videos", "3"]) == 0
    out = capsys.readouterr().out
    rates = re.findall(r"([\d.]+) clips/s", out)
    assert len(rates) == 3 and all(float(r) > 0 for r in rates)
    assert re.search(r"speed-up with workers\s+[\d.]+x", out)
