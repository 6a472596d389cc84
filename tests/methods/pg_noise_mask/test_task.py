"""``NoiseMaskTask`` (spec oracles 7, 8, 10, 11): one training step moves the classifier and the policy with the
policy lr a tenth of the classifier's, the EMA prior moves in training only, validation scores clean and prior-masked
images, the random arm has no policy, one bf16-mixed step, a CLI fit with its charts, stage 2 in
``ClassificationTask``, one-line errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from tests.conftest import REPO
from tests.helpers import cli_error_line, epoch_values, error_of, read_metrics, run_dirs
from visionkit.cli import main
from visionkit.data.datamodules import SyntheticShapesDataModule
from visionkit.data.datamodules.synth_rad import SynthRadDataModule
from visionkit.methods.pg_noise_mask import NoiseMaskTask, PGNoiseMaskError
from visionkit.tasks import ClassificationTask

TINY = {"backbone": "test_resnet", "policy_trunk": "test_resnet", "grid": 8, "kernel_size": 3, "sigma": 0.75,
        "num_classes": 12, "in_channels": 1, "image_size": 32, "optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}
HEAT = str(REPO / "configs" / "pg_noise_mask" / "heat_synthrad.yaml")
#: the shipped heating config (test_resnet both ways, lr 0.05) made tiny: G=8, 2 epochs of 2 batches of 4 images.
SMALL = ["--model.init_args.grid", "8", "--model.init_args.kernel_size", "3", "--model.init_args.sigma", "0.75",
         "--data.init_args.train_per_class", "1", "--data.init_args.val_per_class", "1", "--data.init_args.test_per_class", "1",
         "--data.init_args.batch_size", "4", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def make_task(**kwargs) -> NoiseMaskTask:
    torch.manual_seed(0)
    return NoiseMaskTask(**{**TINY, **kwargs})


def synth_rad(**kwargs) -> SynthRadDataModule:
    return SynthRadDataModule(**{"train_per_class": 1, "val_per_class": 1, "test_per_class": 1, "batch_size": 4,
                                 "image_size": 32, **kwargs})


def quiet_trainer(**kwargs) -> Trainer:
    return Trainer(**{"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                      "enable_progress_bar": False, "enable_model_summary": False, **kwargs})


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(4, 1, 32, 32, generator=gen), "label": torch.randint(0, 12, (4,), generator=gen)}


@pytest.fixture(scope="module")
def heated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a tiny CLI fit of the shipped heating config (2 epochs of 2 batches)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("heat")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        main(["fit", "--config", HEAT, *SMALL])
    finally:
        os.chdir(cwd)
    (run,) = run_dirs(folder / "logs")
    return run


# ---- one training step (oracle 8) ------------------------------------------------------------------------


def test_one_step_moves_classifier_policy_and_prior_with_a_tenth_of_the_lr() -> None:
    task = make_task()
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    prior = task.masker.policy.base_alpha.clone(), task.masker.policy.base_beta.clone()
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(task, synth_rad())
    assert trainer.global_step == 1  # the policy's step is not counted: one step per batch
    classifier_opt, policy_opt = trainer.optimizers
    assert {id(p) for g in classifier_opt.param_groups for p in g["params"]} == {id(p) for p in task.model.parameters()}
    assert {id(p) for g in policy_opt.param_groups for p in g["params"]} == {id(p) for p in task.masker.policy.parameters()}
    assert all(g["initial_lr"] == pytest.approx(0.1) for g in classifier_opt.param_groups)
    assert all(g["initial_lr"] == pytest.approx(0.01) for g in policy_opt.param_groups)
    changed = {n for n, p in task.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("model.") for n in changed)
    for part in ("masker.policy.trunk.", "masker.policy.alpha_head.", "masker.policy.beta_head."):
        assert any(n.startswith(part) for n in changed), part
    assert not torch.equal(task.masker.policy.base_alpha, prior[0])
    assert not torch.equal(task.masker.policy.base_beta, prior[1])
    # schedules: per epoch, classifier StepLR (unchanged before classifier_lr_step), policy cosine to 0 at max_epochs
    assert [type(s.scheduler).__name__ for s in trainer.lr_scheduler_configs] == ["StepLR", "CosineAnnealingLR"]
    assert trainer.lr_scheduler_configs[1].scheduler.T_max == 1  # max_steps=1: one epoch (max_epochs: test_cli_fit)


def test_training_loss_is_the_faithful_product_and_validation_leaves_the_prior_alone() -> None:
    task = make_task()
    out = task.compute_loss(batch(), "train")
    torch.testing.assert_close(out["loss"].detach(), out["ce"] * out["ce_scale"], rtol=1e-5, atol=0)
    assert 2.0 < float(out["ce_scale"]) < 1.5 * math.log(64)  # mean LSE of the cells' log density, ~log(G^2)
    task.eval()
    policy = task.masker.policy
    prior = policy.base_alpha.clone(), policy.base_beta.clone()
    calls = []
    hook = policy.register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        first = task.compute_loss(batch(), "val")
        again = task.compute_loss(batch(), "val")
    hook.remove()
    assert calls == []  # the prior-only evaluation never calls the policy
    assert torch.equal(policy.base_alpha, prior[0]) and torch.equal(policy.base_beta, prior[1])
    torch.testing.assert_close(first["loss"], torch.nn.functional.cross_entropy(task(batch()["image"]), batch()["label"]))
    assert torch.equal(first["noisy_preds"], again["noisy_preds"])  # seeded prior masks, the same every epoch
    assert not torch.equal(first["noisy_preds"], first["preds"])


def test_the_random_arm_has_no_policy_and_one_optimiser() -> None:
    task = make_task(estimator="random")
    assert task.masker.policy is None
    assert not any(n.startswith("masker.") for n, _ in task.named_parameters())
    out = task.compute_loss(batch(), "train")
    torch.testing.assert_close(out["loss"].detach(), math.log(64) * out["ce"], rtol=1e-6, atol=0)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(task, synth_rad())
    assert len(trainer.optimizers) == 1 and [type(s.scheduler).__name__ for s in trainer.lr_scheduler_configs] == ["StepLR"]
    assert any(not torch.equal(p.detach(), before[n]) for n, p in task.model.named_parameters())


def test_a_last_training_batch_of_one_image_is_skipped() -> None:
    task = make_task(num_classes=3, in_channels=3)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(task, SyntheticShapesDataModule(num_classes=3, num_train=5, num_val=4, num_test=4, batch_size=4))
    assert trainer.global_step == 1


def test_one_bf16_mixed_step_trains_and_validates() -> None:
    """The shared precision test's setting (tests/core/test_task_precision.py) for this task."""
    torch.manual_seed(0)
    data = SyntheticShapesDataModule(num_classes=3, num_train=8, num_val=8, num_test=8, batch_size=8)
    task = NoiseMaskTask(num_classes=3, image_size=32, scheduler="none", grid=8, kernel_size=3, sigma=0.75,
                         policy_trunk="test_resnet")
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    trainer = quiet_trainer(precision="bf16-mixed", max_steps=1, limit_val_batches=1)
    trainer.fit(task, data)
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    assert math.isfinite(float(trainer.callback_metrics["val_noisy_acc"]))
    changed = {n for n, p in task.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("model.") for n in changed) and any(n.startswith("masker.") for n in changed)
    assert all(p.dtype == torch.float32 for p in task.parameters())
    assert all(b.dtype == torch.float32 for b in task.buffers() if b.is_floating_point())


def test_visualize_shows_image_mask_and_masked_side_by_side() -> None:
    task = make_task().eval()
    prior = task.masker.policy.base_alpha.clone()
    task.masker.train()  # visualize draws in eval mode whatever the mode, and restores it
    panels = task.visualize(batch(), None)
    assert task.masker.training and torch.equal(task.masker.policy.base_alpha, prior)
    assert set(panels) == {"predictions", "noise_mask"}
    tiles = panels["noise_mask"]
    assert tiles.shape == (4, 3, 96, 3 * 96 + 8) and tiles.min() >= 0 and tiles.max() <= 1
    image, mask = tiles[..., :96], tiles[..., 100:196]
    torch.testing.assert_close(image[:, 0, ::3, ::3], batch()["image"][:, 0])  # un-normalised, nearest upscaled
    assert 0.2 < float(mask.mean()) < 0.8


# ---- the CLI run, its logs and charts, stage 2 (oracle 11) ------------------------------------------------


def test_cli_fit_logs_clean_and_noisy_accuracy_and_draws_the_policy_chart(heated: Path) -> None:
    rows = read_metrics(heated)
    for key in ("val_acc", "val_noisy_acc", "val_loss", "val_alpha", "val_mask_std", "train_loss", "train_ce_scale",
                "train_alpha", "train_beta", "train_expected_m", "train_mask_mean", "train_mask_std", "train_acc"):
        assert sorted(epoch_values(rows, key)) == [0, 1], key
    assert any(r.get("train_loss_step") for r in rows)
    # per-epoch schedules: the classifier's lr constant (StepLR at 15 epochs), the policy's a cosine over 2 epochs
    lrs = [(float(r["lr-classifier/pg1"]), float(r["lr-policy/pg1"])) for r in rows if r.get("lr-policy/pg1")]
    assert lrs == [(pytest.approx(0.05), pytest.approx(0.005)), (pytest.approx(0.05), pytest.approx(0.0025))]
    images = heated / "images" / "val"
    for name in ("epoch000_policy.png", "epoch001_policy.png", "epoch001_noise_mask.png", "epoch001_predictions.png"):
        assert (images / name).is_file(), name


def test_stage_two_loads_the_heated_classifier_without_the_policy(heated: Path) -> None:
    ckpt = heated / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    heated_model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    assert any(k.startswith("masker.policy.") for k in state)
    task = ClassificationTask(backbone="test_resnet", checkpoint_path=str(ckpt), num_classes=6, in_channels=1,
                              image_size=32, normalize_input=True)
    own = task.model.state_dict()
    assert own["fc.weight"].shape[0] == 6
    backbone = [k for k in own if not k.startswith("fc.")]
    assert backbone and all(torch.equal(own[k], heated_model[k]) for k in backbone)
    assert not any("policy" in name or "masker" in name for name, _ in task.named_modules())
    assert not any("policy" in k or "masker" in k for k in task.state_dict())


def test_stage_two_can_start_its_warm_up_at_the_official_hundredth_of_the_lr(monkeypatch) -> None:
    """Oracle 11: the official fine-tune warms up with LinearLR(start_factor=0.01), so its first lr is 1e-5 at lr 1e-3."""
    task = ClassificationTask(backbone="test_resnet", num_classes=6, image_size=32, lr=1e-3, optimizer="sgd",
                              warmup_epochs=7, warmup_start_factor=0.01)
    monkeypatch.setattr(Trainer, "estimated_stepping_batches", property(lambda self: 40))  # 10 epochs of 4 steps
    task.trainer = Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    config = task.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    lrs = []
    for _ in range(28):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[14] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 14 / 28)  # linear to the full lr over 7 x 4 steps
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # warm-up done: cosine from the peak
    with pytest.raises(ValueError, match="warmup_start_factor must be in"):
        ClassificationTask(backbone="test_resnet", num_classes=6, warmup_start_factor=0.0)


# ---- one-line errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kernel_size": 4}, r"^kernel_size must be a positive odd number, got 4$"),
     ({"grid": 40}, r"^grid 40 is larger than the image size 32$"),
     ({"image_size": None}, r"^NoiseMaskTask needs image_size"),
     ({"estimator": "adversarial"}, r"^estimator must be 'faithful', 'reinforce' or 'random', got 'adversarial'$"),
     ({"policy_lr_scale": 0.0}, r"^policy_lr_scale must be positive"),
     ({"classifier_lr_step": 0}, r"^classifier_lr_step must be a positive"),
     ({"warmup_epochs": 2.0}, r"^NoiseMaskTask has no warm-up .*warmup_epochs must be 0, got 2.0$")],
)
def test_bad_settings_are_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(PGNoiseMaskError, match=message) as exc:
        make_task(**kwargs)
    error_of(exc)


@pytest.mark.parametrize(("option", "value", "expected"), [("kernel_size", "4", "kernel_size must be a positive odd number, got 4"),
                                                           ("grid", "40", "grid 40 is larger than the image size 32")])
def test_bad_settings_through_the_cli_are_one_line_and_leave_no_run(capsys, option: str, value: str, expected: str) -> None:
    line = cli_error_line(capsys, ["fit", "--config", HEAT, *SMALL, f"--model.init_args.{option}", value])
    assert expected in line
    assert run_dirs() == []
