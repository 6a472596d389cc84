"""``DeltaActivationTask``: DALs after every activation of the per-frame CNN, the sparsity loss added with
its weight, densities logged per stage, and a short fit through the CLI with its density chart."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import epoch_values, read_metrics, run_dirs
from visionkit.cli import main
from visionkit.methods.delta_activation import DeltaActivationTask


def _task(**kwargs) -> DeltaActivationTask:
    torch.manual_seed(0)
    return DeltaActivationTask(backbone="test_resnet", num_classes=10, image_size=24, **kwargs)


def test_loss_is_the_task_loss_plus_the_weighted_delta_penalty() -> None:
    batch = {"video": torch.rand(2, 3, 3, 24, 24), "label": torch.tensor([1, 7])}
    plain, weighted = _task(sparsity_weight=0.0), _task(sparsity_weight=0.01)
    a, b = plain.compute_loss(batch, "train"), weighted.compute_loss(batch, "train")
    torch.testing.assert_close(a["task_loss"], b["task_loss"])  # same weights, same clip prediction
    assert float(b["sparsity_loss"]) > 0
    torch.testing.assert_close(b["loss"], b["task_loss"] + 0.01 * b["sparsity_loss"], rtol=1e-5, atol=1e-6)
    expected = sum(float(layer.last_loss) for layer in weighted.layers().values())
    assert float(b["sparsity_loss"]) == pytest.approx(expected, rel=1e-5)
    b["loss"].backward()
    assert all(layer.theta.grad is not None for layer in weighted.layers().values())


def test_steps_get_their_own_learning_rate_and_no_weight_decay() -> None:
    task = _task(lr=2e-3, weight_decay=0.05, step_lr_scale=10.0, scheduler="none")
    opt = task.configure_optimizers()
    steps = {id(layer.theta) for layer in task.layers().values()}
    (step_group,) = [g for g in opt.param_groups if any(id(p) in steps for p in g["params"])]
    assert {id(p) for p in step_group["params"]} == steps
    assert step_group["lr"] == pytest.approx(2e-2) and step_group["weight_decay"] == 0.0
    others = [g for g in opt.param_groups if g is not step_group]
    assert all(g["lr"] == pytest.approx(2e-3) for g in others)
    optimised = sum(len(g["params"]) for g in opt.param_groups)
    assert optimised == len([p for p in task.parameters() if p.requires_grad])  # nothing lost, nothing twice
    with pytest.raises(ValueError, match="step_lr_scale"):
        _task(step_lr_scale=0.0)


def test_density_counts_deltas_of_every_layer_and_static_clips_are_all_zero() -> None:
    task = _task().eval()
    with torch.no_grad():
        task.compute_loss({"video": torch.rand(1, 1, 3, 24, 24).expand(2, 4, -1, -1, -1), "label": torch.tensor([0, 1])}, "val")
    values = task.density["val_density"].compute()
    assert float(values["density"]) == 0.0 and float(values["mac_density"]) == 0.0
    assert len([k for k in values if k.startswith("density/")]) == len(task.layers()) > 5


def test_fit_logs_densities_steps_and_a_density_chart(tmp_path) -> None:
    config = tmp_path / "dal.yaml"
    config.write_text(
        "model:\n  class_path: DeltaActivationTask\n  init_args:\n    backbone: test_resnet\n    sparsity_weight: 1.0e-3\n"
    )
    main(["fit", "--config", str(REPO / "tests" / "conf" / "video.yaml"), "--config", str(config)])
    run = run_dirs()[-1]
    rows = read_metrics(run)
    for key in ("val_density", "val_mac_density", "train_density", "val_acc"):
        assert sorted(epoch_values(rows, key)) == [0, 1], key
    assert any(k.startswith("theta/") for k in rows[0])
    assert list((run / "images" / "val").glob("*_density.png")) and list((run / "images" / "val").glob("*_predictions.png"))
