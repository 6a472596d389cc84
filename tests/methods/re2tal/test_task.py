"""``Re2TALTask`` and ``Re2TALClassificationTask``: a CPU bf16-mixed step through the reversible backward, the
frozen-feature arm, the backbone's learning rate, a short CLI fit that logs the mAP and writes the timeline
panel, rewired classifiers that keep the original state-dict keys, and one-line errors (Python and CLI)."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from tests.conftest import REPO
from tests.helpers import cli_error_line, error_of, read_metrics, run_dirs
from visionkit.data.datamodules import SyntheticTALDataModule
from visionkit.methods.re2tal import (
    Re2TALClassificationTask,
    Re2TALTask,
    RewiredStage,
    TALInputError,
    rewired_stages,
)
from visionkit.tasks import ClassificationTask

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

CONFIG = str(REPO / "configs" / "re2tal" / "synthetic_tal.yaml")
TINY_DATA = ["--data.init_args.num_frames", "12", "--data.init_args.min_length", "3", "--data.init_args.max_length", "4", "--data.init_args.num_train", "4",
             "--data.init_args.num_val", "4", "--data.init_args.num_test", "4", "--data.init_args.batch_size", "4"]


def tiny_data(**kwargs) -> SyntheticTALDataModule:
    return SyntheticTALDataModule(num_frames=12, min_length=3, max_length=4, max_segments=2, num_train=4, num_val=4, num_test=4,
                                  batch_size=4, **kwargs)


def task(**kwargs) -> Re2TALTask:
    torch.manual_seed(0)
    return Re2TALTask(asset="shapes_test_resnet", num_classes=3, image_size=16, head_width=16, scheduler="none", **kwargs)


def test_one_bf16_mixed_step_trains_the_rewired_backbone_and_validates() -> None:
    model = task()
    assert list(rewired_stages(model.model.backbone)) == ["layer1"]
    backbone = {n: p.detach().clone() for n, p in model.model.backbone.named_parameters()}
    trainer = Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=1, limit_val_batches=1,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, tiny_data())
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"])) and 0 <= float(metrics["val_map@0.5"]) <= 1
    changed = [n for n, p in model.model.backbone.named_parameters() if not torch.equal(p.detach(), backbone[n])]
    assert any(n.startswith("layer1.") for n in changed), "the reversible stage's weights did not train"
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_frozen_arm_trains_only_the_head_and_the_backbone_gets_its_own_rate() -> None:
    frozen = task(freeze_backbone=True).train()
    assert not frozen.model.backbone.training and frozen.model.head.training
    assert not any(p.requires_grad for p in frozen.model.backbone.parameters())
    batch = next(iter(_loader()))
    out = frozen.compute_loss(batch, "train")
    out["loss"].backward()
    assert frozen.model.head.cls_out.weight.grad is not None
    assert frozen.model.features(batch["video"]).grad_fn is None
    groups = frozen.configure_optimizers().param_groups
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in frozen.parameters())
    model = task(lr=1e-3, backbone_lr_scale=0.1)
    ids = {id(p) for p in model.model.backbone.parameters()}
    groups = model.configure_optimizers().param_groups
    assert len(groups) == 4  # head and backbone, each with and without weight decay
    for g in groups:
        inside = {id(p) in ids for p in g["params"]}
        assert len(inside) == 1 and g["lr"] == pytest.approx(1e-4 if inside.pop() else 1e-3)


def _loader():
    dm = tiny_data()
    dm.setup("fit")
    return dm.train_dataloader()


def test_fit_logs_the_map_and_writes_the_timeline_panel(tmp_path) -> None:
    from PIL import Image

    from visionkit.core.trainer import build_trainer

    trainer = build_trainer(save_dir=str(tmp_path), name="re2tal", max_epochs=1, accelerator="cpu",
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(task(), tiny_data())
    (run,) = run_dirs(tmp_path)
    rows = read_metrics(run)
    assert any(r.get("val_map@0.5") for r in rows) and any(r.get("val_map") for r in rows)
    (panel,) = (run / "images" / "val").glob("epoch000_timeline.png")
    assert Image.open(panel).size[0] >= 4 * 12 * 16  # a grid of 4 timelines of 12 steps at 16 px per step


def test_rewired_classifier_keeps_the_original_keys_and_norm_eval_holds() -> None:
    torch.manual_seed(0)
    plain = ClassificationTask(backbone="test_resnet", num_classes=3, image_size=16)
    rewired = Re2TALClassificationTask(backbone="test_resnet", num_classes=3, image_size=16, norm_eval=True)
    assert isinstance(rewired.model.layer1, RewiredStage)
    assert rewired.load_state_dict(plain.state_dict()) is not None
    assert set(rewired.state_dict()) == set(plain.state_dict())
    rewired.train()
    norms = [m for m in rewired.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training or m.weight.requires_grad for m in norms)
    loss = rewired.compute_loss({"image": torch.rand(2, 3, 16, 16), "label": torch.tensor([0, 2])}, "train")["loss"]
    loss.backward()
    assert rewired.model.layer1[0].conv1.weight.grad is not None


def test_bad_inputs_are_one_line() -> None:
    with pytest.raises(TALInputError) as info:
        task().compute_loss({"video": torch.rand(1, 12, 3, 16, 16), "label": torch.tensor([1])}, "train")
    assert "missing ['segments', 'segment_labels', 'duration']" in error_of(info)
    batch = next(iter(_loader()))
    with pytest.raises(TALInputError) as info:
        Re2TALTask(asset="shapes_test_resnet", num_classes=2, image_size=16).compute_loss(batch, "train")
    assert "num_classes=2" in error_of(info)
    with pytest.raises(TALInputError) as info:
        task(snippet_frames=5).compute_loss(batch, "train")
    assert "snippet_frames=5" in error_of(info)
    with pytest.raises(TALInputError) as info:
        task()(torch.rand(4, 3, 16, 16))
    assert "(B, T, C, H, W)" in error_of(info)


def test_cli_errors_are_one_line(capsys) -> None:
    line = cli_error_line(capsys, ["fit", "--config", CONFIG, *TINY_DATA, "--model.init_args.asset", "null",
                                   "--model.init_args.backbone", "test_efficientnet"])
    assert "EfficientNet has no residual stage to rewire" in line
    line = cli_error_line(capsys, ["fit", "--config", CONFIG, "--data", "MovingDigitsDataModule", "--data.num_frames", "4",
                                   "--data.num_train", "4", "--data.num_val", "4", "--data.batch_size", "4",
                                   "--data.image_size", "24", "--trainer.fast_dev_run", "1"])
    assert "Re2TALTask needs batches with ['video', 'segments', 'segment_labels', 'duration']" in line
    assert "missing ['segments', 'segment_labels', 'duration']" in line
