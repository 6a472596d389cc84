"""The memory benchmark module: case selection, task -> case, the runner, ratios, table, chart, overhead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import visionkit.memory as memory
from visionkit.backbones import BackboneError
from visionkit.errors import VisionkitError
from visionkit.memory.benchmark import (
    BenchmarkCase,
    BenchmarkConfig,
    BenchmarkError,
    add_ratios,
    bar_chart,
    build_task,
    check_backbone,
    markdown_table,
    measure_overhead,
    run_benchmark,
    select_cases,
    task_case,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

CLASSIFICATION = "visionkit.tasks.classification.ClassificationTask"
CASES = {
    "linear": BenchmarkCase(CLASSIFICATION, {"finetune": "linear"}),
    "full": BenchmarkCase(CLASSIFICATION, {"finetune": "full"}),
}


def test_package_reexports_the_meter_and_the_benchmark():
    from visionkit.memory import MemoryReport, measure_training_step, run_benchmark  # noqa: F401

    assert memory.measure_training_step is memory.meter.measure_training_step
    assert memory.run_benchmark is memory.benchmark.run_benchmark
    assert set(memory.__all__) <= set(dir(memory))


def test_no_module_of_the_package_imports_matplotlib_at_top_level():
    for path in Path(memory.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "matplotlib" for n in names), path


def test_select_cases_puts_the_reference_first_and_names_unknown_ones():
    assert select_cases(CASES) == ["linear", "full"]
    assert select_cases(CASES, ["linear"]) == ["full", "linear"]
    with pytest.raises(BenchmarkError, match=r"unknown method\(s\) \['lora'\]") as info:
        select_cases(CASES, ["lora"])
    assert isinstance(info.value, VisionkitError)
    with pytest.raises(BenchmarkError, match="reference case 'full'"):
        select_cases({"linear": CASES["linear"]})


def test_check_backbone_refuses_bad_input_in_one_line():
    check_backbone(BenchmarkConfig(backbone="test_vit", image_size=32, batch_size=2))
    with pytest.raises(BackboneError, match="'not_a_model_xyz' is not a timm model name"):
        check_backbone(BenchmarkConfig(backbone="not_a_model_xyz"))
    with pytest.raises(BackboneError, match=r"closest names: \['resnet18'"):
        check_backbone(BenchmarkConfig(backbone="resnet181"))
    with pytest.raises(BenchmarkError, match="must be positive"):
        check_backbone(BenchmarkConfig(backbone="test_vit", batch_size=0))


def test_build_task_merges_run_and_case_arguments():
    config = BenchmarkConfig(backbone="test_resnet", image_size=32, num_classes=3)
    task = build_task(BenchmarkCase(CLASSIFICATION, {"finetune": "linear", "image_size": None}), config)
    hp = task.hparams
    assert (hp.backbone, hp.num_classes, hp.finetune, hp.scheduler, hp.image_size) == ("test_resnet", 3, "linear", "none", None)


def test_task_case_trains_only_the_trainable_parameters():
    config = BenchmarkConfig(backbone="test_resnet", image_size=32, num_classes=3)
    model, loss_fn, optimizer = task_case(build_task(CASES["linear"], config))
    assert model.training
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == trainable
    loss = loss_fn({"image": torch.rand(2, 3, 32, 32), "label": torch.tensor([0, 2])})
    assert loss.ndim == 0 and loss.requires_grad


def test_run_benchmark_rows_ratios_table_and_chart(tmp_path):
    config = BenchmarkConfig(backbone="test_vit", image_size=32, batch_size=2, num_classes=3, warmup=0,
                             backbone_kwargs={"patch_size": 8})
    seen = []
    rows = run_benchmark(CASES, config, ["linear"], on_row=lambda row: seen.append(row["method"]))
    assert seen == ["full", "linear"] and [r["method"] for r in rows] == seen
    full, linear = rows
    assert full["ratios"] == {"trainable_params": 1.0, "activation_bytes": 1.0, "total_bytes": 1.0, "step_time_s": 1.0}
    assert 0 < linear["ratios"]["activation_bytes"] < 0.1
    assert linear["ratios"]["total_bytes"] == linear["total_bytes"] / full["total_bytes"]
    assert linear["trainable_params"] < full["trainable_params"]
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| method | trainable params | ratio | activations MiB |") and len(table) == 4
    assert table[3].startswith("| linear |")
    bar_chart(rows, tmp_path / "chart.png", "test")
    assert (tmp_path / "chart.png").stat().st_size > 1000


def test_add_ratios_divides_by_the_full_row():
    rows = [
        {"method": "full", "trainable_params": 10, "activation_bytes": 4, "total_bytes": 8, "step_time_s": 2.0},
        {"method": "x", "trainable_params": 5, "activation_bytes": 1, "total_bytes": 0, "step_time_s": 1.0},
    ]
    add_ratios(rows)
    assert rows[1]["ratios"] == {"trainable_params": 0.5, "activation_bytes": 0.25, "total_bytes": 0.0, "step_time_s": 0.5}


def test_measure_overhead_times_interleaved_pairs():
    config = BenchmarkConfig(backbone="test_resnet", image_size=32, num_classes=3)
    model, loss_fn, optimizer = task_case(build_task(CASES["full"], config))
    batch = {"image": torch.rand(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    out = measure_overhead(model, loss_fn, optimizer, batch, steps=2)
    assert out["steps"] == 2 and len(out["plain_all_s"]) == len(out["metered_all_s"]) == 2
    assert out["plain_s"] > 0 and out["metered_s"] > 0
