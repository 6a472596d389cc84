"""The ToCo demo on synthetic shapes (spec §7), the library side of ``scripts/toco_demo.py`` and the slow effect test.

Data: :class:`~visionkit.data.datamodules.SyntheticMultiShapesDataModule` with class-tinted shapes on grating
backgrounds (64 px, ``num_classes`` shapes, 1 to ``max_objects`` per image), generated once and held in memory so
every arm trains on the same images. Model: a random-init timm ViT (patch 8, width 96, depth 4, 4 heads; aux block 2) with small
heads. Arms, each seeded alike:

* ``cls``: classification only (``L_cls + L_cls^aux``);
* ``ptc``: the same plus PTC from step ``contrast_after``;
* ``toco``: ``ptc`` continued with the segmentation term on PAR pseudo labels (and CTC when ``ctc_weight > 0``).

:func:`naive_baselines` scores the all-background and image-label broadcast predictions on the same split;
:func:`benchmark_step` times one ToCo training step against one plain classification step of the same ViT;
:func:`benchmark` runs it in the issue's setting (``scripts/bench_toco_step.py``).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from visionkit.methods.toco.errors import ToCoError
from visionkit.methods.toco.task import ToCoTask

__all__ = [
    "BENCHMARK_TERMS", "SHAPES_HEADS", "SHAPES_VIT", "VOC_BENCHMARK", "InMemory", "benchmark", "benchmark_step", "evaluate",
    "naive_baselines", "shapes_data", "shapes_task", "train_steps",
]

#: the spec's CPU ViT (§7): 64 px images, 8 px patches (8x8 tokens), width 96, depth 4, 4 heads, aux block 2.
SHAPES_VIT: dict[str, Any] = {
    "backbone": "vit_tiny_patch16_224", "image_size": 64, "aux_layer": 2,
    "backbone_kwargs": {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 4},
}
#: small heads for that ViT: LargeFOV-lite (64 wide, dilation 2), CTC 96 -> 128 -> 32 -> 64 prototypes, 4 crops of 16 px.
SHAPES_HEADS: dict[str, Any] = {
    "decoder_dim": 64, "decoder_dilation": 2, "ctc_dim": 64, "ctc_hidden_dim": 128, "ctc_bottleneck_dim": 32,
    "num_crops": 4, "crop_size": 16,
}


class InMemory(Dataset):
    """The items of ``dataset``, generated once (in order) and then served from memory."""

    def __init__(self, dataset: Dataset) -> None:
        self.items = [dataset[i] for i in range(len(dataset))]
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def shapes_data(
    num_classes: int = 3, max_objects: int = 2, num_train: int = 1000, num_test: int = 200, batch_size: int = 32,
    seed: int = 0, background: str = "gratings",
):
    """A :class:`~visionkit.data.datamodules.SyntheticMultiShapesDataModule` (class-tinted shapes on ``background``,
    64 px) whose splits are held in memory (the validation split is the test split)."""
    from visionkit.data.datamodules import SyntheticMultiShapesDataModule

    data = SyntheticMultiShapesDataModule(
        num_classes=num_classes, max_objects=max_objects, class_colours=True, background=background,
        num_train=num_train, num_val=num_test,
        num_test=num_test, batch_size=batch_size, image_size=64, seed=seed,
    )
    test = InMemory(data.dataset("test"))
    data.datasets = {"train": InMemory(data.dataset("train")), "val": test, "test": test}
    return data


def shapes_task(num_classes: int = 3, **kwargs: Any) -> ToCoTask:
    """A :class:`ToCoTask` on :data:`SHAPES_VIT` with :data:`SHAPES_HEADS`; ``kwargs`` override (weights, lr, ...)."""
    defaults = {"cam_scales": (1.0,), "scheduler": "none", "lr": 5e-4, "head_lr_scale": 1.0, "weight_decay": 0.01}
    return ToCoTask(num_classes=num_classes, **{**SHAPES_VIT, **SHAPES_HEADS, **defaults, **kwargs})


def _trainer(steps: int, out_dir: str | Path | None, name: str, progress: bool):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    return Trainer(
        accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=CSVLogger(out_dir, name=name) if out_dir is not None else False, enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=25, deterministic=True,
    )


def train_steps(task: ToCoTask, data: Any, steps: int, out_dir: str | Path | None = None, name: str = "arm",
                progress: bool = False) -> float:
    """Train ``task`` for ``steps`` optimizer steps (no validation); returns the seconds taken.

    A second call continues from the current weights with a fresh optimiser and step count.
    """
    start = time.perf_counter()
    _trainer(steps, out_dir, name, progress).fit(task, datamodule=data)
    return time.perf_counter() - start


def evaluate(task: ToCoTask, data: Any) -> dict[str, float]:
    """The test split's ``test_miou`` (seg head), ``test_cam_miou``, ``test_aux_cam_miou``, ``test_pseudo_miou``, ..."""
    metrics = _trainer(1, None, "eval", False).test(task, datamodule=data, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}


def naive_baselines(dataset: Dataset, num_classes: int) -> dict[str, float]:
    """Official mIoU of two label-free guesses: every pixel background, and every pixel the image's first present
    class (the image label broadcast)."""
    from visionkit.metrics import SegmentationIoU

    background, broadcast = SegmentationIoU(num_classes + 1), SegmentationIoU(num_classes + 1)
    for i in range(len(dataset)):
        item = dataset[i]
        mask, label = item["mask"][None], item["label"]
        first = int(label.nonzero()[0]) + 1 if label.any() else 0
        background.update(torch.zeros_like(mask), mask)
        broadcast.update(torch.full_like(mask, first), mask)
    return {"all_background": float(background.compute()["miou"]), "label_broadcast": float(broadcast.compute()["miou"])}


def _sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _side_by_side(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` rounds, the functions alternating within a round (after
    one warm-up call each), so a change in machine load hits them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def benchmark_step(task: ToCoTask, batch: dict[str, Tensor], repeats: int = 5) -> dict[str, float]:
    """Seconds of one training step (forward, backward, AdamW step), side by side on the same ViT and batch.

    ``plain``: the ViT's own classifier with a multi-label soft-margin loss; ``toco``: the task's training step with
    every term on (the two alternate, medians over ``repeats``); ``cam``, ``pseudo_labels`` (PAR),
    ``ctc_views`` (second view + local crops through the encoder, forward and backward): the no-grad or extra
    work inside it, each as the step does it (``cam`` reuses the forward's tokens when
    :meth:`~visionkit.methods.toco.ToCo.deterministic_encoder` holds). ``ratio`` = toco / plain. The task's
    weights are restored afterwards.
    """
    import torch.nn.functional as F

    from visionkit.methods.toco.crops import random_resized_crop, roi_mask, sample_local_crops

    hp, model = task.hparams, task.model
    images, labels = batch["image"], batch["label"].float()
    device = images.device
    x = task.normalize(images)
    head = torch.nn.Linear(model.classifier.in_channels, hp.num_classes).to(device)
    plain_params = [*model.backbone.parameters(), *head.parameters()]
    plain_opt = torch.optim.AdamW([p for p in plain_params if p.requires_grad], lr=1e-9)
    toco_opt = torch.optim.AdamW([{**g, "lr": 1e-9} for g in task.optimizer_groups()], lr=1e-9)
    state = copy.deepcopy(task.state_dict())  # restored at the end: the task leaves as it came

    def plain() -> None:
        plain_opt.zero_grad()
        token = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
        F.multilabel_soft_margin_loss(head(token), labels).backward()
        plain_opt.step()

    def toco() -> None:
        toco_opt.zero_grad()
        task.compute_loss(batch, "train")["loss"].backward()
        toco_opt.step()

    saved = (hp.seg_after, hp.contrast_after)
    hp.seg_after, hp.contrast_after = -1, -1
    try:
        task.train()
        out = _side_by_side({"plain": plain, "toco": toco}, repeats, device)
        with torch.no_grad():
            forward = model(x)
            cam, cam_aux = model.multi_scale_cams(x, hp.cam_scales, forward)
            out.update(_side_by_side({
                "cam": lambda: model.multi_scale_cams(x, hp.cam_scales, forward),
                "pseudo_labels": lambda: task._pseudo_labels(images, cam, labels),
            }, repeats, device))
        roi = roi_mask(cam_aux, labels, hp.low, hp.high, allow_unlabelled=True)

        def views() -> None:
            crops = sample_local_crops(x, roi, hp.num_crops, hp.crop_size)
            view = random_resized_crop(x, tuple(x.shape[-2:]), scale=tuple(hp.second_view_scale))
            (model.class_tokens(view).sum() + model.class_tokens(crops.crops).sum()).backward()

        out.update(_side_by_side({"ctc_views": views}, repeats, device))
    finally:
        hp.seg_after, hp.contrast_after = saved
        task.zero_grad(set_to_none=True)
        task.load_state_dict(state)
    out["ratio"] = out["toco"] / out["plain"]
    return out


#: the issue's benchmark setting: every term on (PTC 0.5, CTC 0.5 with 4 crops of 16 px, seg 0.5 with PAR
#: dilations 1, 2, 4, 8) on :data:`SHAPES_VIT` at 64 px.
BENCHMARK_TERMS: dict[str, Any] = {
    "ptc_weight": 0.5, "ctc_weight": 0.5, "seg_weight": 0.5, "par_dilations": (1, 2, 4, 8),
}


#: the official VOC setting for :func:`benchmark` (``setting="voc"``): DeiT-B/16 (random weights: the timing does not
#: depend on them) at 448 px, the official loss weights, heads, 8 crops of 96 px, CAM scales 1, 0.5, 1.5 and PAR rings
#: 1-24 (the ``ToCoTask`` defaults), on synthetic shapes of 8 classes.
VOC_BENCHMARK: dict[str, Any] = {
    "backbone": "deit_base_patch16_224", "image_size": 448, "ptc_weight": 0.2, "ctc_weight": 0.5, "seg_weight": 0.1,
}


def benchmark(batch_size: int = 16, repeats: int = 5, device: str = "cpu", seed: int = 0,
              setting: str = "shapes") -> dict[str, Any]:
    """:func:`benchmark_step` on one batch of ``batch_size`` synthetic shapes, the task seeded with ``seed``, on
    ``device``: its figures (seconds; ``ratio``) and ``setting``.

    ``setting``: ``"shapes"`` (the issue's CPU setting: :data:`SHAPES_VIT` at 64 px with :data:`SHAPES_HEADS` and
    :data:`BENCHMARK_TERMS`) or ``"voc"`` (:data:`VOC_BENCHMARK`, the official model and step at 448 px).
    """
    if batch_size < 1 or repeats < 1:
        raise ToCoError(f"benchmark needs batch_size >= 1 and repeats >= 1, got {batch_size} and {repeats}")
    if setting not in ("shapes", "voc"):
        raise ToCoError(f"benchmark setting must be 'shapes' or 'voc', got {setting!r}")
    dev = torch.device(device)
    if setting == "shapes":
        data = shapes_data(num_train=batch_size, num_test=1, batch_size=batch_size, seed=seed)
    else:
        from visionkit.data.datamodules import SyntheticMultiShapesDataModule

        data = SyntheticMultiShapesDataModule(num_classes=8, max_objects=3, num_train=batch_size, num_val=1, num_test=1,
                                              batch_size=batch_size, image_size=VOC_BENCHMARK["image_size"], seed=seed)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    batch = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in batch.items()}
    torch.manual_seed(seed)
    task = (shapes_task(**BENCHMARK_TERMS) if setting == "shapes" else ToCoTask(num_classes=8, **VOC_BENCHMARK)).to(dev)
    figures = benchmark_step(task, batch, repeats)
    hp = task.hparams
    described = {
        "setting": setting, "batch_size": batch_size, "image_size": int(batch["image"].shape[-1]), "repeats": repeats,
        "device": str(dev), "threads": torch.get_num_threads(), "seed": seed, "backbone": hp.backbone,
        "vit": dict(hp.backbone_kwargs or {}),
        **{k: list(hp[k]) if isinstance(hp[k], tuple | list) else hp[k]
           for k in ("ptc_weight", "ctc_weight", "seg_weight", "par_dilations", "cam_scales", "num_crops", "crop_size")},
    }
    return {**figures, "setting": described}
