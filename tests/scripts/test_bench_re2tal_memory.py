"""``scripts/bench_re2tal_memory.py``: saved bytes inside a rewired stage are exactly the two output streams at
every depth in reversible mode and grow with depth in vanilla mode (ViT and ResNet stages); the table, JSON
and chart are written. Timings are printed, never asserted."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

TINY = ["--depths", "2", "4", "--repeats", "1", "--batch-size", "2", "--image-size", "16", "--width", "16"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_re2tal_memory", REPO / "scripts" / "bench_re2tal_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("family", "stream_bytes"), [
    ("vit", 2 * 17 * 16 * 4),  # batch 2, 4x4 patches + cls token, width 16, float32
    ("resnet", 2 * 64 * 4 * 4 * 4),  # batch 2, layer1 at 64 channels on a 4x4 map
])
def test_reversible_stage_saves_two_streams_at_every_depth(bench, capsys, tmp_path, family: str,
                                                           stream_bytes: int) -> None:
    assert bench.main([*TINY, "--family", family, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "re2tal_memory.json").read_text())["rows"]
    assert [r["depth"] for r in rows] == [2, 4]
    assert [r["reversible_stage_bytes"] for r in rows] == [2 * stream_bytes] * 2
    assert rows[1]["vanilla_stage_bytes"] > 1.8 * rows[0]["vanilla_stage_bytes"] > 1.8 * 2 * stream_bytes
    assert all(r["vanilla_total_bytes"] > r["reversible_total_bytes"] > r["reversible_stage_bytes"] for r in rows)
    assert all(r["time_ratio"] > 0 for r in rows)
    assert len(re.findall(r"^\| [24] \|", out, flags=re.M)) == 2
    assert "spread over depths 0.0% (target within 10%): met" in out
    assert (tmp_path / "re2tal_memory.png").stat().st_size > 0


def test_bad_image_size_is_a_usage_error(bench, capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(["--out", str(tmp_path), "--image-size", "18"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("multiple of the 4 px patches, got 18")
