"""``ToCoTask``: one fit + predict of a tiny task (every loss term, the four mIoUs, palette PNGs read back, CAM
overlays, nothing overwritten), one bf16-mixed step, the terms' schedule (spec §2.8) and the learning-rate
oracle (spec §5 item 13, heads x10), the optional dense CRF and its lazy import, one-line errors (also from the CLI)."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from tests.conftest import REPO
from tests.helpers import cli_error_line, error_of, last_value, read_metrics
from tests.methods.toco import TINY_TASK
from visionkit.data.datamodules import SyntheticMultiShapesDataModule
from visionkit.methods.toco import CRFUnavailableError, DenseCRF, ToCoError, ToCoTask, poly_warmup_factor

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

CONFIG = str(REPO / "configs" / "toco" / "shapes_wsss.yaml")
TINY = TINY_TASK
QUIET = {"accelerator": "cpu", "devices": 1, "enable_checkpointing": False, "enable_progress_bar": False,
         "enable_model_summary": False}


def make_task(**kwargs) -> ToCoTask:
    torch.manual_seed(0)
    return ToCoTask(**{**TINY, **kwargs})


def shapes(**kwargs) -> SyntheticMultiShapesDataModule:
    return SyntheticMultiShapesDataModule(**{"num_classes": 3, "num_train": 8, "num_val": 4, "num_test": 4,
                                             "batch_size": 4, "image_size": 32, "max_objects": 2, **kwargs})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """A tiny task fitted for 2 steps (every term on), validated on 4 images, then predicted twice."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("toco")
    task = make_task(predict_cams=True)
    teacher = [p.detach().clone() for p in task.model.ctc.teacher.parameters()]
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    trainer = Trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, logger=CSVLogger(folder),
                      log_every_n_steps=1, **QUIET)
    trainer.fit(task, shapes())
    data = shapes()
    outputs = trainer.predict(task, data)
    trainer.predict(task, data)
    return SimpleNamespace(task=task, trainer=trainer, before=before, teacher=teacher, outputs=outputs,
                           data=data, run=Path(trainer.log_dir))


# ---- fit, validation and predict --------------------------------------------------------------------------


def test_training_uses_every_term_and_moves_every_part(fitted) -> None:
    rows = read_metrics(fitted.run)
    for term in ("loss", "cls", "aux_cls", "ptc", "ctc", "seg"):
        assert math.isfinite(last_value(rows, f"train_{term}_step")), term
    changed = {n.split(".")[1] for n, p in fitted.task.named_parameters() if not torch.equal(p, fitted.before[n])}
    assert {"backbone", "classifier", "aux_classifier", "decoder", "ctc"} <= changed
    assert not fitted.task.model.backbone.pos_embed.requires_grad  # frozen as in the official ViT
    moved = [not torch.equal(a, b) for a, b in zip(fitted.teacher, fitted.task.model.ctc.teacher.parameters(), strict=True)]
    assert any(moved)  # the EMA teacher followed the student


def test_validation_logs_the_four_mious_with_per_class_iou(fitted) -> None:
    rows = read_metrics(fitted.run)
    for kind in ("", "cam_", "aux_cam_", "pseudo_"):
        value = last_value(rows, f"val_{kind}miou")
        assert 0.0 <= value <= 1.0, kind
        assert math.isfinite(last_value(rows, f"val_{kind}iou/background")), kind


def test_predict_writes_palette_pngs_whose_indices_are_the_masks(fitted) -> None:
    first, second = sorted(fitted.run.glob("predictions_*"))  # a second predict run claims its own folder
    assert [p.name for p in (first, second)] == ["predictions_0", "predictions_1"]
    masks = torch.cat([o["mask"] for o in fitted.outputs])
    assert masks.dtype == torch.uint8 and masks.shape == (4, 32, 32) and int(masks.max()) <= 3
    for index, mask in enumerate(masks):
        image = Image.open(first / "masks" / f"{index:06d}.png")
        assert image.mode == "P" and image.size == (32, 32)
        assert np.array_equal(np.array(image), mask.numpy())
        cam = Image.open(first / "cams" / f"{index:06d}.png")
        assert cam.mode == "RGB" and cam.size == (32, 32)
    heat = torch.cat([o["cam"] for o in fitted.outputs])
    assert heat.shape == (4, 32, 32) and float(heat.min()) >= 0 and float(heat.max()) < 1


def test_visualize_gives_the_five_panels(fitted) -> None:
    task = fitted.task.eval()
    batch = next(iter(fitted.data.val_dataloader()))
    with torch.no_grad():
        out = task.compute_loss(batch, "val")
        panels = task.visualize(batch, out)
        recomputed = task.visualize(batch, None)
    assert list(panels) == ["input", "cam", "pseudo_label", "prediction", "ground_truth"]
    assert list(recomputed) == list(panels)
    for name, images in panels.items():
        assert images.shape == (4, 3, 32, 32), name
        assert float(images.min()) >= 0 and float(images.max()) <= 1, name
        torch.testing.assert_close(recomputed[name], images, rtol=0, atol=1e-5)


def test_one_bf16_mixed_step_trains_and_validates() -> None:
    """The shared precision test's setting (tests/core/test_task_precision.py) for this task."""
    task = make_task()
    trainer = Trainer(precision="bf16-mixed", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                      num_sanity_val_steps=0, logger=False, **QUIET)
    trainer.fit(task, shapes())
    metrics = trainer.callback_metrics
    for key in ("train_loss", "train_ptc", "train_ctc", "train_seg", "val_miou", "val_cam_miou", "val_pseudo_miou"):
        assert math.isfinite(float(metrics[key])), key


# ---- schedule ---------------------------------------------------------------------------------------------


def at_step(task: ToCoTask, step: int) -> ToCoTask:
    task._trainer = SimpleNamespace(global_step=step)
    return task


def test_terms_join_after_their_steps_and_unused_cams_are_not_computed(monkeypatch) -> None:
    task = make_task(seg_after=3, contrast_after=1, aux_pseudo_until=3)
    batch = next(iter(shapes().train_dataloader()))
    calls = []
    cams = task.model.multi_scale_cams
    monkeypatch.setattr(task.model, "multi_scale_cams", lambda *a: calls.append(1) or cams(*a))
    pseudo_sources = []
    pseudo = task._pseudo_labels
    monkeypatch.setattr(task, "_pseudo_labels", lambda i, c, *a: pseudo_sources.append(c) or pseudo(i, c, *a))
    keys = {}
    for step in (0, 1, 2, 3, 4):
        keys[step] = set(at_step(task, step).compute_loss(batch, "train"))
    assert keys[0] == keys[1] == {"loss", "cls", "aux_cls"}  # official `iter <= after`: the term is off
    assert keys[2] == keys[3] == {"loss", "cls", "aux_cls", "ptc", "ctc"}
    assert keys[4] == {"loss", "cls", "aux_cls", "ptc", "ctc", "seg"}
    assert len(calls) == 3  # CAMs only where a term needs them
    task.hparams.aux_pseudo_until = 4
    at_step(task, 4).compute_loss(batch, "train")
    _, cam_aux = cams(task.normalize(batch["image"]), task.hparams.cam_scales)
    torch.testing.assert_close(pseudo_sources[-1], cam_aux)  # the aux CAM feeds the pseudo labels early (COCO)


def test_poly_schedule_oracle() -> None:
    """Spec §5 item 13 (official VOC: T = 20000, warm-up 1500 from 1e-6, power 0.9)."""
    def f(t):
        return poly_warmup_factor(t, 20000, 1500)

    assert f(0) == pytest.approx(1e-6, rel=1e-9)
    assert f(750) == pytest.approx(0.5, abs=1e-6)
    assert f(1499) == pytest.approx(1499 / 1500, abs=1e-6)
    assert f(1500) == pytest.approx(0.93224, abs=5e-6)  # not re-based: a drop from ~1 at the end of warm-up
    assert 0 < f(19999) < 2e-4 and f(20000) == 0.0 and f(25000) == 0.0
    assert all(f(t) > f(t + 100) for t in range(1500, 19900, 100))


def test_configure_optimizers_gives_heads_ten_times_the_lr_and_the_poly_factor() -> None:
    task = make_task(lr=6e-5, weight_decay=0.01, warmup_steps=1500)
    assert task.hparams.scheduler == "poly"
    task._trainer = SimpleNamespace(estimated_stepping_batches=20000, max_epochs=8)
    config = task.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = {g["name"]: g["initial_lr"] for g in opt.param_groups}
    assert lrs["backbone"] == pytest.approx(6e-5) and lrs["backbone_no_decay"] == pytest.approx(6e-5)
    for name in ("heads", "decoder"):
        assert lrs[name] == pytest.approx(6e-4), name
    held = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert len(held) == len(set(held)) and set(held) == trainable  # every trainable parameter once
    assert not {id(p) for p in task.model.ctc.teacher.parameters()} & set(held)
    factors = [fn(1500) for fn in sched.lr_lambdas]
    assert factors == pytest.approx([0.93224] * len(factors), abs=5e-6)
    task.hparams.warmup_steps = None  # warmup_epochs=1.0 of a 20000-step, 8-epoch run: 2500 steps
    assert task.warmup_length(20000) == 2500
    task._trainer = SimpleNamespace(max_epochs=-1, num_training_batches=500)  # a max_steps run: one loader length
    assert task.warmup_length(20000) == 500


# ---- dense CRF --------------------------------------------------------------------------------------------


def test_crf_import_is_lazy_and_its_absence_is_one_line(monkeypatch) -> None:
    for path in (REPO / "visionkit" / "methods" / "toco").glob("*.py"):  # pydensecrf only inside functions
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m.startswith("pydensecrf")], path.name
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(CRFUnavailableError) as info:
        make_task(crf=True)
    assert "pip install visionkit[crf]" in error_of(info)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ToCoError)
    with pytest.raises(CRFUnavailableError):
        DenseCRF()(torch.full((2, 4, 4), 0.5), torch.zeros(3, 4, 4))


def test_dense_crf_follows_a_colour_edge() -> None:
    """Needs the ``crf`` extra (pydensecrf2), which the dev extras install."""
    image = torch.zeros(3, 24, 24)
    image[0, :, 12:] = 1.0  # black | red, edge at column 12
    truth = torch.zeros(24, 24, dtype=torch.long)
    truth[:, 12:] = 1
    gen = torch.Generator().manual_seed(0)
    p1 = (0.5 + 0.1 * (2 * truth.float() - 1) + 0.6 * (torch.rand(24, 24, generator=gen) - 0.5)).clamp(0.05, 0.95)
    probs = torch.stack([1 - p1, p1])
    refined = DenseCRF()(probs, image)  # the official parameters
    assert refined.shape == probs.shape and refined.dtype == torch.float32
    torch.testing.assert_close(refined.sum(0), torch.ones(24, 24), rtol=0, atol=1e-4)
    before = int((probs.argmax(0) != truth).sum())
    after = int((refined.argmax(0) != truth).sum())
    assert before > 100 and after < 10, (before, after)


# ---- one-line errors --------------------------------------------------------------------------------------


def test_bad_arguments_and_inputs_are_one_line_errors() -> None:
    with pytest.raises(ToCoError, match="needs a timm ViT with token blocks") as info:
        ToCoTask(backbone="test_resnet", num_classes=3, image_size=32)
    error_of(info)
    with pytest.raises(ToCoError, match="crop_size=6 must be a multiple of the ViT patch size 4x4") as info:
        make_task(crop_size=6)
    error_of(info)
    with pytest.raises(ToCoError, match="0 <= low <= high <= 1") as info:
        make_task(low=0.8, high=0.7)
    error_of(info)
    with pytest.raises(ToCoError, match="loss weights must be >= 0") as info:
        make_task(seg_weight=-0.1)
    error_of(info)
    task = make_task()
    single = {"image": torch.rand(2, 3, 32, 32), "label": torch.tensor([0, 2])}
    with pytest.raises(ToCoError, match=r"multi-hot image labels \(B, num_classes=3\)") as info:
        at_step(task, 0).compute_loss(single, "train")
    error_of(info)
    odd = {"image": torch.rand(2, 3, 30, 30), "label": torch.ones(2, 3)}
    with pytest.raises(ToCoError, match="30x30 is not a multiple of the ViT patch size 4x4") as info:
        task.compute_loss(odd, "train")
    error_of(info)


def _voc_folder(root: Path, bad_mask: bool = False, with_masks: bool = True) -> Path:
    """A VOC-layout folder with 2 images (8x8 px); ``bad_mask`` gives one mask the label 30."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    if with_masks:
        (root / "SegmentationClass").mkdir()
    for i, name in enumerate(("a", "b")):
        Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        if with_masks:
            mask = np.zeros((8, 8), np.uint8)
            mask[2:6, 2:6] = 30 if bad_mask else 15
            Image.fromarray(mask, mode="L").save(root / "SegmentationClass" / f"{name}.png")
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("a\nb\n")
    return root


VOC_ARGS = ["--data", "VOCSegmentationDataModule", "--data.init_args.batch_size", "2", "--data.init_args.image_size", "32",
            "--model.init_args.num_crops", "2"]


def test_cli_bad_inputs_are_one_line_errors_and_leave_no_run(capsys, tmp_path) -> None:
    fast = ["fit", "--config", CONFIG, "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"]
    line = cli_error_line(capsys, [*fast, "--data.init_args.image_size", "60"])
    assert "60x60 is not a multiple of the ViT patch size 8x8" in line
    line = cli_error_line(capsys, [*fast, "--model.init_args.backbone", "test_resnet",
                                   "--model.init_args.backbone_kwargs", "{}"])
    assert "needs a timm ViT with token blocks" in line
    line = cli_error_line(capsys, [*fast, "--data", "SyntheticShapesDataModule", "--data.init_args.image_size", "64"])
    assert "multi-hot image labels" in line
    no_masks = _voc_folder(tmp_path / "voc_nomask", with_masks=False)
    line = cli_error_line(capsys, [*fast, *VOC_ARGS, "--data.init_args.root", str(no_masks)])
    assert "SegmentationClass" in line
    bad = _voc_folder(tmp_path / "voc_bad", bad_mask=True)
    line = cli_error_line(capsys, [*fast, *VOC_ARGS, "--data.init_args.root", str(bad)])
    assert "30" in line and "expected class indices" in line
    assert not list(Path("logs").glob("*/version_*"))  # failed runs leave no folder behind


def test_cli_crf_without_pydensecrf_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    line = cli_error_line(capsys, ["predict", "--config", CONFIG, "--model.init_args.crf", "true",
                                   "--trainer.accelerator", "cpu"])
    assert "pip install visionkit[crf]" in line
