"""``scripts/bench_delta_activation.py`` prints a per-layer MAC table, the dense/delta ratio, an exact
float64 delta-inference check and the forward-time ratios, with random weights or a task checkpoint."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from tests.conftest import REPO

TINY = ["--batches", "1", "--batch-size", "2", "--frames", "3", "--repeats", "2"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_delta_activation", REPO / "scripts" / "bench_delta_activation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_random_weights_print_the_table_and_the_ratios(bench, capsys) -> None:
    assert bench.main(TINY) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights (no --checkpoint given)" in out
    rows = re.findall(r"^(\S+\.delta)\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s", out, flags=re.M)
    assert len(rows) == 12  # one per activation of test_resnet
    assert all(int(dense.replace(",", "")) >= int(delta.replace(",", "")) for _, _, dense, delta in rows)
    assert float(re.search(r"total dense/delta MACs\s+([\d.]+)x", out)[1]) >= 1
    assert float(re.search(r"max \|diff\| (\S+)", out)[1]) < 1e-9
    ratios = re.findall(r"\)\s+([\d.]+)x\s+\(", out)
    assert len(ratios) == 2 and all(float(r) > 0 for r in ratios)


def test_a_task_checkpoint_is_loaded_and_bad_paths_are_one_line(bench, capsys, tmp_path) -> None:
    from visionkit.tasks.video_classification import VideoClassificationTask

    torch.manual_seed(0)
    task = VideoClassificationTask(backbone="test_resnet", num_classes=10, image_size=32)
    hparams = {**task.hparams, "_class_path": "visionkit.tasks.video_classification.VideoClassificationTask"}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, tmp_path / "video.ckpt")
    assert bench.main([*TINY, "--checkpoint", str(tmp_path / "video.ckpt")]) == 0
    out = capsys.readouterr().out
    assert "model: VideoClassificationTask checkpoint" in out and "RANDOM" not in out
    assert re.search(r"total dense/delta MACs\s+[\d.]+x", out)
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY, "--checkpoint", str(tmp_path / "missing.safetensors")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("bench_delta_activation: error: checkpoint_path") and "missing.safetensors" in err
