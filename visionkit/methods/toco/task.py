"""``ToCoTask``: weakly-supervised semantic segmentation from image labels with ToCo (Ru et al., CVPR 2023).

The task composes the pure-torch parts of :mod:`visionkit.methods.toco` on the shared segmentation base
(:class:`~visionkit.tasks.SegmenterBase`: backbone arguments, ``num_classes`` foreground classes, masks with 0
= background and ``ignore_index``, the seg-head mIoU). Training reads only the image labels; masks serve
evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.backbones.factory import BackboneError
from visionkit.core.params import param_groups
from visionkit.errors import check_choice
from visionkit.methods.toco.callbacks import ToCoPredictionWriter
from visionkit.methods.toco.cam import DEFAULT_SCALES, box_mask, cam_to_label
from visionkit.methods.toco.crf import DenseCRF, require_pydensecrf
from visionkit.methods.toco.crops import random_resized_crop, roi_mask, sample_local_crops
from visionkit.methods.toco.ctc import ctc_loss
from visionkit.methods.toco.errors import ToCoError
from visionkit.methods.toco.losses import balanced_seg_loss
from visionkit.methods.toco.model import ToCo
from visionkit.methods.toco.par import PAR
from visionkit.methods.toco.pseudo_labels import refine_pseudo_labels
from visionkit.methods.toco.ptc import affinity_mask, ptc_loss, token_labels
from visionkit.methods.toco.schedule import poly_warmup_factor
from visionkit.metrics.segmentation import SegmentationIoU
from visionkit.tasks.networks import network_from_hparams
from visionkit.tasks.segmentation import SegmenterBase
from visionkit.utils.viz import mask_colours, overlay

__all__ = ["CAM_KINDS", "ToCoTask"]

#: the CAM-based label maps scored at validation/test besides the seg head: ``<stage>_<kind>_miou``.
CAM_KINDS = ("cam", "aux_cam", "pseudo")


def _resize(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, K, h, w)`` to ``size`` (no-op when it matches)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


class ToCoTask(SegmenterBase):
    """ToCo on any timm ViT built with ``dynamic_img_size=True`` (set by default for timm backbones by name).

    Training, per batch of images ``x`` and multi-hot image labels ``y`` (spec §2.8; ``t`` = ``global_step``)::

        L = L_cls + L_cls^aux + [t > contrast_after] (ptc_weight L_ptc + ctc_weight L_ctc)
                              + [t > seg_after] seg_weight L_seg

    ``L_cls`` is the multi-label soft margin of the GMP logits; the aux CAM's token labels drive PTC on the final
    tokens; CTC contrasts the class tokens of the input and a random resized crop of it (positives) with
    ``num_crops`` local crops cut from the input itself, aligned with the aux CAM (negatives: crops that are
    almost all background); ``L_seg`` is the balanced CE of the decoder against PAR-refined pseudo labels of
    the final multi-scale CAM (the aux CAM while ``t <= aux_pseudo_until``). A term that is off is not
    computed (the official code computes it and multiplies by 0: the same update, more time). The rloss
    regulariser (``0.05 L_reg``, a compiled CUDA extension) is left out.

    Validation and test log, besides ``<stage>_loss`` (= cls + aux cls), ``<stage>_miou`` of the seg head
    (the checkpoint monitor) and ``<stage>_cam_miou``, ``<stage>_aux_cam_miou`` (eval-mode ``cam_to_label``
    with ``background`` and the **ground-truth image labels**, as the official log) and
    ``<stage>_pseudo_miou`` (the training pseudo labels with ignored pixels counted as background), each
    from its own dataset-level confusion matrix summed over DDP ranks, with per-class IoU.

    ``predict`` returns ``{"mask": (B, H, W) uint8 class indices}`` (argmax of the seg head, optionally after
    a dense CRF), ``"full_mask"`` (a list of masks at each image's ``orig_size`` when the batch has it),
    ``"cam"`` ``(B, H, W)`` with ``predict_cams`` and ``index``/``path``; :class:`ToCoPredictionWriter`
    writes them as VOC-palette PNGs (and CAM overlays) into the run folder.

    Args:
        aux_layer: block whose un-normed output feeds the aux classifier (official -3).
        decoder_dim, decoder_dilation: LargeFOV width and dilation (official 512, 5).
        ctc_dim, ctc_hidden_dim, ctc_bottleneck_dim, ema_momentum: CTC head sizes and teacher EMA (official
            1024, 2048, 256, 0.9).
        freeze_pos_embed: freeze the ViT's position embedding (official).
        cam_scales: multi-scale CAM factors for training and evaluation (official 1.0, 0.5, 1.5).
        high, low, background: CAM thresholds (official VOC 0.7, 0.25, 0.5; COCO 0.65, 0.25, 0.45).
        ptc_weight, ctc_weight, seg_weight: loss weights (official 0.2, 0.5, 0.1).
        contrast_after, seg_after: PTC/CTC and the seg term join once ``global_step`` exceeds these
            (official VOC -1 and 2000; COCO 12000 and 8000).
        aux_pseudo_until: pseudo labels come from the aux CAM while ``global_step <= aux_pseudo_until``
            (official VOC -1, COCO 12000).
        temperature: CTC temperature (official VOC 0.5, COCO 1.0).
        num_crops, crop_size: CTC local crops per image and their side in pixels (official 8, 96 at 448 px;
            a multiple of the patch size).
        second_view_scale: area range of the second global view (official 0.4-1.0).
        par_dilations, par_iterations: PAR neighbourhood and steps (official 1-24, 10).
        official_box: cut the token labels with the image box in pixel units as the official code (a bug).
        head_lr_scale: learning rate of the classifiers, the CTC student and the decoder, as a multiple of
            ``lr`` (official 10).
        scheduler: ``"poly"`` (official: linear warm-up from ``warmup_start_factor``, then ``(1 - t/T)^poly_power``
            over the run's ``T`` steps), or :class:`~visionkit.core.VisionTask`'s ``"cosine"`` / ``"none"``.
        warmup_steps: warm-up length in optimizer steps (official 1500); ``None``: ``warmup_epochs``.
        poly_power: exponent of the poly decay (official 0.9).
        warmup_start_factor: the warm-up's first factor (official 1e-6).
        crf: dense-CRF post-processing of ``predict`` (needs ``pip install visionkit[crf]``).
        predict_cams: ``predict`` also returns (and the writer saves) CAM overlays.
        **kwargs: backbone, class and optimisation arguments of :class:`~visionkit.tasks.SegmenterBase`.

    Raises:
        ToCoError: a backbone that is no ViT with ``dynamic_img_size`` (e.g. a CNN), thresholds outside
            ``0 <= low <= high <= 1``, negative weights, a crop size that is not a multiple of the patch size,
            ``crf=True`` without pydensecrf (:class:`~visionkit.methods.toco.crf.CRFUnavailableError`), and at
            run time batches without multi-hot ``(B, num_classes)`` labels or of a size the patch does not divide.
    """

    def __init__(
        self,
        aux_layer: int = -3,
        decoder_dim: int = 512,
        decoder_dilation: int = 5,
        ctc_dim: int = 1024,
        ctc_hidden_dim: int = 2048,
        ctc_bottleneck_dim: int = 256,
        ema_momentum: float = 0.9,
        freeze_pos_embed: bool = True,
        cam_scales: tuple[float, ...] = DEFAULT_SCALES,
        high: float = 0.7,
        low: float = 0.25,
        background: float = 0.5,
        ptc_weight: float = 0.2,
        ctc_weight: float = 0.5,
        seg_weight: float = 0.1,
        contrast_after: int = -1,
        seg_after: int = 2000,
        aux_pseudo_until: int = -1,
        temperature: float = 0.5,
        num_crops: int = 8,
        crop_size: int = 96,
        second_view_scale: tuple[float, float] = (0.4, 1.0),
        par_dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24),
        par_iterations: int = 10,
        official_box: bool = False,
        head_lr_scale: float = 10.0,
        scheduler: Literal["poly", "cosine", "none"] = "poly",
        warmup_steps: int | None = None,
        poly_power: float = 0.9,
        warmup_start_factor: float | None = 1e-6,
        crf: bool = False,
        predict_cams: bool = False,
        **kwargs: Any,
    ) -> None:
        check_choice("scheduler", scheduler, ("poly", "cosine", "none"), ToCoError)
        if not 0 <= low <= high <= 1 or not 0 <= background <= 1:
            raise ToCoError(
                f"CAM thresholds must satisfy 0 <= low <= high <= 1 and 0 <= background <= 1, got low={low}, "
                f"high={high}, background={background}"
            )
        weights = {"ptc_weight": ptc_weight, "ctc_weight": ctc_weight, "seg_weight": seg_weight}
        bad = {k: v for k, v in weights.items() if not v >= 0}
        if bad:
            raise ToCoError(f"loss weights must be >= 0, got {bad}")
        if not cam_scales or any(not s > 0 for s in cam_scales):
            raise ToCoError(f"cam_scales must be a non-empty list of positive factors, got {list(cam_scales)}")
        if num_crops < 1 or crop_size < 1:
            raise ToCoError(f"num_crops and crop_size must be positive, got {num_crops} and {crop_size}")
        if not temperature > 0 or not head_lr_scale > 0 or not poly_power > 0:
            raise ToCoError(
                f"temperature, head_lr_scale and poly_power must be positive, got {temperature}, {head_lr_scale} "
                f"and {poly_power}"
            )
        if warmup_steps is not None and warmup_steps < 0:
            raise ToCoError(f"warmup_steps must be >= 0 (or null for warmup_epochs), got {warmup_steps}")
        if crf:
            require_pydensecrf()  # fail at construction, not after a whole predict loop
        # VisionTask knows only "cosine"/"none"; the poly schedule is built here (hparams record "poly")
        super().__init__(
            scheduler="none" if scheduler == "poly" else scheduler, warmup_start_factor=warmup_start_factor, **kwargs
        )

    # ---- model ---------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """The backbone, built with ``dynamic_img_size=True`` when it is a timm model by name that takes it."""
        hp = self.hparams
        extra = dict(hp.get("backbone_kwargs") or {})
        if hp.get("asset") or "dynamic_img_size" in extra or str(hp.backbone).startswith("open_clip:"):
            return super().build_network()
        try:
            return network_from_hparams({**hp, "backbone_kwargs": {**extra, "dynamic_img_size": True}},
                                        self.num_mask_classes)
        except BackboneError as err:
            if "dynamic_img_size" not in str(err):
                raise
            return super().build_network()  # no such argument (a CNN): ToCo says what it needs

    def adapt(self, net: nn.Module) -> nn.Module:
        hp = self.hparams
        model = ToCo(
            net, hp.num_classes, aux_layer=hp.aux_layer, decoder_dim=hp.decoder_dim,
            decoder_dilation=hp.decoder_dilation, ctc_dim=hp.ctc_dim, ctc_hidden_dim=hp.ctc_hidden_dim,
            ctc_bottleneck_dim=hp.ctc_bottleneck_dim, momentum=hp.ema_momentum, freeze_pos_embed=hp.freeze_pos_embed,
        )
        ph, pw = model.patch_size
        if hp.crop_size % ph or hp.crop_size % pw:
            raise ToCoError(
                f"crop_size={hp.crop_size} must be a multiple of the ViT patch size {ph}x{pw} (local crops are "
                f"whole token grids); use e.g. {max(ph, hp.crop_size // ph * ph)}"
            )
        return model

    def configure_models(self) -> None:
        super().configure_models()
        hp = self.hparams
        self.par = PAR(tuple(hp.par_dilations), hp.par_iterations)
        self.crf = DenseCRF() if hp.crf else None

    def configure_metrics(self) -> None:
        super().configure_metrics()
        hp = self.hparams
        self.cam_iou = nn.ModuleDict({
            f"{stage}_{kind}": SegmentationIoU(self.num_mask_classes, hp.ignore_index, hp.convention, self._class_names())
            for stage in ("val", "test")
            for kind in CAM_KINDS
        })

    def configure_callbacks(self) -> list:
        return [ToCoPredictionWriter(cams=self.hparams.predict_cams)]

    # ---- helpers -------------------------------------------------------------------------------
    def _labels(self, batch: dict[str, Any]) -> Tensor:
        """The batch's multi-hot image labels ``(B, num_classes)``, checked."""
        labels, n = batch.get("label"), self.hparams.num_classes
        if not isinstance(labels, Tensor) or labels.ndim != 2 or labels.shape[1] != n:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ToCoError(
                f"ToCoTask trains from multi-hot image labels (B, num_classes={n}); the batch's 'label' is {shape} "
                f"(use a multi-label datamodule such as SyntheticMultiShapesDataModule or VOCSegmentationDataModule)"
            )
        return labels.float()

    def _pseudo_source(self, cam: Tensor, cam_aux: Tensor) -> Tensor:
        return cam_aux if self.global_step <= self.hparams.aux_pseudo_until else cam

    def _pseudo_labels(self, images: Tensor, cam: Tensor, labels: Tensor, valid: Tensor | None = None) -> Tensor:
        hp = self.hparams
        return refine_pseudo_labels(
            images, cam, labels, self.par, high=hp.high, low=hp.low, valid=valid, ignore_index=hp.ignore_index,
            allow_unlabelled=True,
        )

    def forward(self, images: Tensor) -> Tensor:
        """Seg-head scores ``(B, num_classes + 1, H, W)`` at the input resolution, for images in [0, 1]."""
        return _resize(self.model(self.normalize(images)).seg, images.shape[-2:])

    # ---- steps ---------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        if stage == "train":
            return self._train_step(batch)
        return self._eval_step(batch, stage)

    def _train_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        hp, step = self.hparams, self.global_step
        images, labels = batch["image"], self._labels(batch)
        x = self.normalize(images)
        out = self.model(x)
        cls = F.multilabel_soft_margin_loss(out.logits.float(), labels)
        aux_cls = F.multilabel_soft_margin_loss(out.aux_logits.float(), labels)
        loss, logged = cls + aux_cls, {"cls": cls.detach(), "aux_cls": aux_cls.detach()}
        contrast = step > hp.contrast_after
        use_ptc, use_ctc = contrast and hp.ptc_weight > 0, contrast and hp.ctc_weight > 0
        use_seg = step > hp.seg_after and hp.seg_weight > 0
        if not (use_ptc or use_ctc or use_seg):
            return {"loss": loss, **logged}
        cam, cam_aux = self.model.multi_scale_cams(x, hp.cam_scales, out)  # reuses out's tokens when exact
        img_box = batch.get("img_box")
        if use_ptc:
            tokens = token_labels(
                cam_aux, labels, tuple(out.features.shape[-2:]), low=hp.low, high=hp.high, img_box=img_box,
                official_box=hp.official_box, ignore_index=hp.ignore_index, allow_unlabelled=True,
            )
            ptc = ptc_loss(out.features, affinity_mask(tokens, hp.ignore_index))
            loss, logged["ptc"] = loss + hp.ptc_weight * ptc, ptc.detach()
        if use_ctc:
            roi = roi_mask(cam_aux, labels, hp.low, hp.high, allow_unlabelled=True)
            local = sample_local_crops(x, roi, hp.num_crops, hp.crop_size)
            view = random_resized_crop(x, tuple(x.shape[-2:]), scale=tuple(hp.second_view_scale))
            global_tokens = torch.stack([out.class_token, self.model.class_tokens(view)], dim=1)
            teacher, student = self.model.contrast(global_tokens, local.crops)
            ctc = ctc_loss(teacher, student, local.flags, hp.temperature)
            loss, logged["ctc"] = loss + hp.ctc_weight * ctc, ctc.detach()
        if use_seg:
            valid = box_mask(img_box, tuple(images.shape[-2:])) if img_box is not None else None
            pseudo = self._pseudo_labels(images, self._pseudo_source(cam, cam_aux), labels, valid)
            seg = balanced_seg_loss(out.seg, pseudo, hp.ignore_index)
            loss, logged["seg"] = loss + hp.seg_weight * seg, seg.detach()
        return {"loss": loss, **logged}

    def _eval_step(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        hp = self.hparams
        images, labels = batch["image"], self._labels(batch)
        x = self.normalize(images)
        out = self.model(x)
        cls = F.multilabel_soft_margin_loss(out.logits.float(), labels)
        aux_cls = F.multilabel_soft_margin_loss(out.aux_logits.float(), labels)
        result = {"loss": cls + aux_cls, "cls": cls, "aux_cls": aux_cls}
        mask = batch.get("mask")
        size = tuple(mask.shape[-2:]) if isinstance(mask, Tensor) else tuple(images.shape[-2:])
        scores = _resize(out.seg, size)
        cam, cam_aux = (_resize(c, size) for c in self.model.multi_scale_cams(x, hp.cam_scales, out))
        cam_label = cam_to_label(cam, labels, background=hp.background, allow_unlabelled=True)
        pseudo = self._pseudo_labels(_resize(images, size), self._pseudo_source(cam, cam_aux), labels)
        result.update(scores=scores, cam_heat=(cam * labels[:, :, None, None]).amax(1), pseudo=pseudo)
        if isinstance(mask, Tensor):
            aux_label = cam_to_label(cam_aux, labels, background=hp.background, allow_unlabelled=True)
            self.iou[f"{stage}_iou"].update(scores.detach(), mask)
            self.cam_iou[f"{stage}_cam"].update(cam_label, mask)
            self.cam_iou[f"{stage}_aux_cam"].update(aux_label, mask)
            self.cam_iou[f"{stage}_pseudo"].update(pseudo.masked_fill(pseudo == hp.ignore_index, 0), mask)
        return result

    def _log_cam_ious(self, stage: str) -> None:
        for kind in CAM_KINDS:
            metric = self.cam_iou[f"{stage}_{kind}"]
            if not metric.update_called:
                continue
            values = metric.compute()  # the confusion matrix is summed over ranks inside compute()
            self.log(f"{stage}_{kind}_miou", values.pop("miou"), sync_dist=False)
            self.log_dict({f"{stage}_{kind}_{k}": v for k, v in values.items()}, sync_dist=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_cam_ious("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_cam_ious("test")

    def class_heat(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, H, W)`` CAM heat in [0, 1): ``max_c y_c A_c`` of the multi-scale CAM, with ``y`` the image labels
        (or, without them, the classes the classifier finds present: logits > 0)."""
        x = self.normalize(images)
        if labels is None:
            labels = (self.model(x).logits > 0).float()
        cam, _ = self.model.multi_scale_cams(x, self.hparams.cam_scales)
        return (cam * labels.to(cam.dtype)[:, :, None, None]).amax(1)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """See the class docstring; masks are ``uint8`` (``num_classes + 1 <= 256``) to keep predictions small."""
        images = batch["image"]
        probs = self(images).float().softmax(1)
        if self.crf is not None:
            probs = torch.stack([self.crf(p, img) for p, img in zip(probs, images, strict=True)])
        dtype = torch.uint8 if self.num_mask_classes <= 256 else torch.int64
        out: dict[str, Any] = {"mask": probs.argmax(1).to(dtype)}
        sizes = batch.get("orig_size")
        if isinstance(sizes, Tensor) and any(tuple(s) != tuple(images.shape[-2:]) for s in sizes.tolist()):
            out["full_mask"] = [_resize(p[None], s)[0].argmax(0).to(dtype) for p, s in zip(probs, sizes.tolist(), strict=True)]
        if self.hparams.predict_cams:
            labels = batch.get("label")
            out["cam"] = self.class_heat(images, labels.float() if isinstance(labels, Tensor) and labels.ndim == 2 else None)
        for key in ("index", "path"):
            if key in batch:
                out[key] = batch[key]
        return out

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Any] | None) -> dict[str, Tensor]:
        """Panels ``input | cam | pseudo_label | prediction | ground_truth`` (the last when the batch has masks)."""
        outputs = outputs or {}
        images = batch["image"]
        k, ignore = self.num_mask_classes, self.hparams.ignore_index
        labels = batch.get("label")
        labels = labels.float() if isinstance(labels, Tensor) and labels.ndim == 2 else None
        panels = {"input": super(SegmenterBase, self).visualize(batch, outputs)["input"]}
        heat = outputs.get("cam_heat", outputs.get("cam"))
        heat = heat if isinstance(heat, Tensor) else self.class_heat(images, labels)
        panels["cam"] = overlay(images, _resize(heat[:, None].float(), images.shape[-2:])[:, 0])
        pseudo = outputs.get("pseudo")
        if pseudo is None and labels is not None:
            cam, cam_aux = self.model.multi_scale_cams(self.normalize(images), self.hparams.cam_scales)
            pseudo = self._pseudo_labels(images, self._pseudo_source(cam, cam_aux), labels)
        if pseudo is not None:
            panels["pseudo_label"] = mask_colours(pseudo.cpu(), k, ignore)
        if isinstance(outputs.get("scores"), Tensor):
            pred = outputs["scores"].argmax(1)
        elif isinstance(outputs.get("mask"), Tensor):
            pred = outputs["mask"]
        else:
            pred = self(images).argmax(1)
        panels["prediction"] = mask_colours(pred.cpu(), k, ignore)
        if isinstance(batch.get("mask"), Tensor):
            panels["ground_truth"] = mask_colours(batch["mask"].cpu(), k, ignore)
        return panels

    # ---- optimisation --------------------------------------------------------------------------
    def optimizer_groups(self) -> list[dict]:
        """The official groups: the backbone at ``lr``; the classifiers with the CTC student (``heads``) and the
        decoder at ``lr * head_lr_scale``; each split into decay / no-decay as in :class:`VisionTask`. The CTC
        teacher is in none (it follows the student by EMA)."""
        hp, m = self.hparams, self.model
        parts = (
            ("backbone", m.backbone, 1.0),
            ("heads", nn.ModuleList([m.classifier, m.aux_classifier, m.ctc.student]), hp.head_lr_scale),
            ("decoder", m.decoder, hp.head_lr_scale),
        )
        groups = []
        for name, module, scale in parts:
            for group in param_groups(module, hp.weight_decay):
                suffix = "" if group["weight_decay"] else "_no_decay"
                groups.append({**group, "lr": hp.lr * scale, "name": name + suffix})
        return groups

    def warmup_length(self, total: int) -> int:
        """Warm-up steps: ``warmup_steps``, else ``warmup_epochs`` in steps of a ``total``-step run."""
        hp = self.hparams
        if hp.warmup_steps is not None:
            return int(hp.warmup_steps)
        epochs = self.trainer.max_epochs
        if epochs is not None and epochs > 0:
            per_epoch = total / epochs
        else:  # a max_steps run: the loader's length (known once estimated_stepping_batches has run)
            batches = getattr(self.trainer, "num_training_batches", math.inf)
            per_epoch = min(total, batches) if math.isfinite(batches) else total
        return min(int(round(hp.warmup_epochs * per_epoch)), total - 1)

    def configure_optimizers(self) -> Any:
        """``"poly"``: the optimiser of :class:`VisionTask` with the official warm-up + poly factor per step
        (:func:`~visionkit.methods.toco.schedule.poly_warmup_factor`); other schedulers as in VisionTask."""
        hp = self.hparams
        if hp.scheduler != "poly":
            return super().configure_optimizers()
        groups = self.optimizer_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = self.warmup_length(total)
        start = hp.warmup_start_factor if hp.warmup_start_factor is not None else 1.0 / (warmup + 1)

        def factor(step: int) -> float:
            return poly_warmup_factor(step, total, warmup, hp.poly_power, start)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
