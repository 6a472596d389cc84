"""``LayerMaskingTask``: forward API, weights, the protocols in validate/test, the CLI configs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from visionkit.cli import main
from visionkit.core.checkpoints import load_task
from visionkit.core.trainer import build_trainer
from visionkit.data.datamodules.synthetic_shapes import SyntheticShapesDataModule
from visionkit.methods.layer_masking import (
    LayerMaskingError,
    LayerMaskingTask,
    MaskingProtocolEvaluator,
    is_layer_masked,
)
from visionkit.tasks import ClassificationTask

EVAL_CONFIG = REPO / "configs" / "layer_masking" / "shapes_asset_eval.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def test_forward_api_and_weights_compatible_with_classification_task() -> None:
    torch.manual_seed(0)
    task = LayerMaskingTask(backbone="test_resnet", num_classes=4).eval()
    baseline = ClassificationTask(backbone="test_resnet", num_classes=4).eval()
    assert list(task.state_dict()) == list(baseline.state_dict())
    task.load_state_dict(baseline.state_dict())
    assert is_layer_masked(task.network)
    x = torch.rand(2, 3, 32, 32)
    keep = torch.ones(2, 1, 32, 32)
    keep[..., 8:24, 8:24] = 0
    with torch.no_grad():
        assert torch.equal(task(x), baseline(x))
        assert torch.allclose(task(x, torch.ones(2, 1, 32, 32)), baseline(x), atol=1e-5)
        assert not torch.allclose(task(x, keep), baseline(x), atol=1e-4)
        probs = task.predict_step({"image": x, "keep_mask": keep, "index": torch.arange(2)}, 0)
        assert torch.allclose(probs["probs"], task(x, keep).softmax(-1))
        assert probs["index"].tolist() == [0, 1]
    with pytest.raises(LayerMaskingError, match="binary"):
        task(x, keep * 0.5)


def test_linear_probe_masks_through_the_tuner() -> None:
    task = LayerMaskingTask(backbone="test_resnet", num_classes=3, finetune="linear").eval()
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert trainable and all(".fc." in n for n in trainable)
    with torch.no_grad():
        out = task(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
        assert torch.allclose(out[0], task.network.fc.bias)
        batch = SyntheticShapesDataModule(num_classes=3, num_val=4).dataset("val")
        images = torch.stack([batch[i]["image"] for i in range(4)])
        labels = torch.stack([batch[i]["label"] for i in range(4)])
        masks = torch.stack([batch[i]["mask"] for i in range(4)])
        task.evaluator.protocols.update(task.masked_model(), images, labels, masks, 0)
    assert task.evaluator.protocols.compute()["removal"][0]["n"] == 4


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"finetune": "lora"}, ["LoRA"]), ({"eval_fills": ["smear"]}, ["smear"]), ({"fill": "blur"}, ["fill"]),
     ({"removal_fractions": [1.5]}, ["fractions"]), ({"asset": "shapes_test_resnet", "checkpoint_path": "x.pt"}, ["asset"])],
)
def test_bad_arguments_are_one_line_errors(kwargs, words) -> None:
    with pytest.raises(ValueError) as info:
        LayerMaskingTask(backbone="test_resnet", num_classes=4, **kwargs)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


def test_validate_and_test_write_curves_and_leakage(tmp_path: Path) -> None:
    task = LayerMaskingTask(asset="shapes_test_resnet", num_classes=8, eval_fills=["layer", "grey", "black"],
                            removal_fractions=[0.0, 0.5], patch_size=4)
    data = SyntheticShapesDataModule(num_classes=8, num_train=16, num_val=48, num_test=32, batch_size=24)
    trainer = build_trainer(save_dir=str(tmp_path / "logs"), name="lm", enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", devices=1)
    metrics = trainer.validate(task, data, verbose=False)[0]
    results = task.protocol_results["val"]
    assert results["region"] == "background"
    rows = {(r["fill"], r["fraction"]): r for r in results["removal"]}
    assert len(rows) == 6 and all(r["n"] == 48 for r in rows.values())
    assert rows[("layer", 0.0)]["accuracy"] == rows[("grey", 0.0)]["accuracy"] == pytest.approx(metrics["val_acc"])
    assert metrics["val_acc_layer_50"] == pytest.approx(rows[("layer", 0.5)]["accuracy"])
    assert {"val_leak_layer", "val_leak_grey", "val_entropy_black_50"} <= set(metrics)
    folder = Path(trainer.log_dir) / "layer_masking"
    with open(folder / "val_epoch000_removal.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and table[0]["region"] == "background"
    assert (folder / "val_epoch000_removal.png").stat().st_size > 1000
    assert (folder / "val_epoch000_leakage.png").exists() and (folder / "val_epoch000_leakage.csv").exists()
    assert sorted(p.name for p in (Path(trainer.log_dir) / "images" / "val").glob("*.png")) == [
        "epoch000_predictions.png", "epoch000_removal40_grey.png", "epoch000_removal40_layer_view.png"]
    trainer.test(task, data, verbose=False)
    assert (folder / "test_epoch000_removal.csv").exists() and task.protocol_results["test"]["removal"][0]["n"] == 32


def test_fit_runs_protocols_only_when_asked(tmp_path: Path) -> None:
    data = SyntheticShapesDataModule(num_classes=4, num_train=32, num_val=16, num_test=16, batch_size=16)
    for flag in (False, True):
        task = LayerMaskingTask(backbone="test_resnet", num_classes=4, eval_fills=["layer", "grey"],
                                removal_fractions=[0.0, 0.3], eval_during_fit=flag)
        trainer = build_trainer(save_dir=str(tmp_path / "logs"), name=f"fit{flag}", enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu", devices=1, max_epochs=1)
        trainer.fit(task, data)
        assert ("val" in task.protocol_results) is flag


def test_cli_validate_with_the_shipped_config(capsys: pytest.CaptureFixture) -> None:
    main(["validate", "--config", str(EVAL_CONFIG), "--data.init_args.num_val", "40", "--data.init_args.batch_size", "40",
          "--model.init_args.removal_fractions", "[0.0, 0.4]", "--model.init_args.eval_fills", "[layer, grey]",
          "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"])
    folder = Path("logs/LayerMaskingTask/version_0/layer_masking")
    assert (folder / "val_epoch000_removal.csv").exists() and (folder / "val_epoch000_leakage.csv").exists()
    with pytest.raises(SystemExit) as info:
        main(["validate", "--config", str(EVAL_CONFIG), "--model.init_args.eval_fills", "[smear]"])
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("visionkit: error:")]
    assert len(err) == 1 and "smear" in err[0]
    with pytest.raises(SystemExit) as info:  # a backbone with layers that have no mask rule
        main(["validate", "--config", str(EVAL_CONFIG), "--model.init_args.asset", "null", "--model.init_args.backbone",
              "test_vit", "--model.init_args.backbone_kwargs", "{img_size: 32, patch_size: 4}"])
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("visionkit: error:")]
    assert len(err) == 1 and "VisionTransformer" in err[0] and "'blocks.0.attn' (Attention)" in err[0]


def test_evaluation_is_a_callback_not_loop_hooks() -> None:
    task = LayerMaskingTask(backbone="test_resnet", num_classes=4)
    callbacks = task.configure_callbacks()
    assert callbacks == [task.evaluator] and isinstance(task.evaluator, MaskingProtocolEvaluator)
    assert task.configure_callbacks()[0] is task.evaluator  # one evaluator: results outlive each run
    for hook in ("on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end",
                 "validation_step", "test_step"):
        assert hook not in LayerMaskingTask.__dict__, hook
    assert not any(k.startswith(("protocols.", "evaluator.")) for k in task.state_dict())


def test_a_trainer_checkpoint_loads_with_load_task(tmp_path: Path) -> None:
    """Checkpoints never held protocol counters (non-persistent buffers), so old and new ones load alike."""
    task = LayerMaskingTask(backbone="test_resnet", num_classes=4, eval_fills=["layer", "grey"],
                            removal_fractions=[0.0, 0.3])
    data = SyntheticShapesDataModule(num_classes=4, num_train=8, num_val=8, batch_size=8)
    trainer = build_trainer(save_dir=str(tmp_path / "logs"), name="ckpt", enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", devices=1, max_steps=1)
    trainer.fit(task, data)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    loaded = load_task(tmp_path / "lm.ckpt")  # the task records its class, as CLI checkpoints do
    assert isinstance(loaded, LayerMaskingTask) and loaded.hparams.removal_fractions == [0.0, 0.3]
    for (name, a), (_, b) in zip(task.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
