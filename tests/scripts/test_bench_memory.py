"""``scripts/bench_memory.py``: an offline run on a tiny ViT writes the table, JSON and chart; a bad
backbone is one line."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


# ---- the benchmark script: offline run on a tiny ViT, and a clear error for a bad backbone ----------------
def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_memory", REPO / "scripts" / "bench_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_script_tiny_run(tmp_path, capsys):
    pytest.importorskip("peft")
    bench = load_bench()
    code = bench.main([
        "--backbone", "test_vit", "--image-size", "32", "--batch-size", "4", "--warmup", "0",
        "--backbone-kwargs", '{"patch_size": 4}', "--out-dir", str(tmp_path),
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "| method | trainable params | ratio | activations MiB |" in out and "| lora |" in out
    rows = {r["method"]: r for r in json.loads((tmp_path / "bench_memory.json").read_text())["rows"]}
    assert rows["full"]["ratios"]["activation_bytes"] == 1.0
    assert rows["linear"]["ratios"]["activation_bytes"] < 0.05
    assert 0.4 < rows["lora"]["ratios"]["activation_bytes"] < 0.9
    assert rows["linear"]["trainable_params"] < rows["lora"]["trainable_params"] < rows["full"]["trainable_params"]
    assert (tmp_path / "bench_memory.png").stat().st_size > 1000


def test_bench_script_bad_backbone(capsys):
    bench = load_bench()
    assert bench.main(["--backbone", "not_a_model_xyz", "--out-dir", "/nonexistent"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'not_a_model_xyz' is not a timm model name" in err


def test_bench_script_hst_rows(tmp_path, capsys):
    """The HST cases on test_vit (D=64, 6 blocks) at 32 px: the official row trains exactly the meta tokens
    (6 x 64) and the ViT blocks' LayerNorms (6 x 2 x 128) on top of the detached row, and keeps the ViT's
    activations for them; halving the side widths shrinks the detached row further."""
    bench = load_bench()
    code = bench.main([
        "--backbone", "test_vit", "--image-size", "32", "--batch-size", "4", "--warmup", "0",
        "--backbone-kwargs", '{"patch_size": 4}', "--methods", "hst,hst_detached,hst_detached_half",
        "--out-dir", str(tmp_path),
    ])
    assert code == 0
    assert "| hst_detached |" in capsys.readouterr().out
    rows = {r["method"]: r for r in json.loads((tmp_path / "bench_memory.json").read_text())["rows"]}
    assert list(rows) == ["full", "hst", "hst_detached", "hst_detached_half"]
    hst, detached, half = rows["hst"], rows["hst_detached"], rows["hst_detached_half"]
    assert hst["trainable_params"] - detached["trainable_params"] == 6 * 64 + 6 * 2 * 128
    assert half["trainable_params"] < detached["trainable_params"]
    assert half["activation_bytes"] < detached["activation_bytes"] < 0.5 * hst["activation_bytes"]
    assert detached["ratios"]["activation_bytes"] < 0.5
