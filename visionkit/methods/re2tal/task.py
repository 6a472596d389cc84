"""Lightning tasks of Re²TAL: temporal action localization with a rewired backbone (``Re2TALTask``), and
``rewire`` + fine-tune of an image classifier (``Re2TALClassificationTask``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from visionkit.backbones.factory import input_normalization
from visionkit.core.task import VisionTask
from visionkit.errors import check_choice
from visionkit.methods.re2tal.errors import TALInputError
from visionkit.methods.re2tal.head import NMS_METHODS, LocalizationLoss, assign_targets, decode_segments
from visionkit.methods.re2tal.model import Re2TALLocalizer, freeze_norms, norm_modules
from visionkit.methods.re2tal.reversible import check_mode
from visionkit.methods.re2tal.rewire import rewire
from visionkit.methods.re2tal.timeline import timeline_images
from visionkit.metrics.temporal import THUMOS_TIOU, TemporalActionMAP
from visionkit.tasks.classification import ClassifierBase
from visionkit.tasks.networks import network_from_hparams

__all__ = ["Re2TALClassificationTask", "Re2TALTask"]

#: Batch keys the localization task reads.
TAL_KEYS = ("video", "segments", "segment_labels", "duration")


class Re2TALTask(VisionTask):
    """Temporal action localization (Re²TAL, Zhao et al. CVPR 2023) with a rewired per-frame timm backbone.

    Every frame of a clip goes through the backbone (rewired by :func:`~visionkit.methods.re2tal.rewire`
    unless ``rewire_backbone=False``), the pooled features form a ``(B, D, L)`` sequence and an
    ActionFormer-lite head (:class:`~visionkit.methods.re2tal.head.TemporalHead`) predicts per step the
    class scores and the distances to the action's start and end. Loss: sigmoid focal + DIoU, normalised by
    an EMA of the positive steps (:class:`~visionkit.methods.re2tal.head.LocalizationLoss`). Validation and
    test decode detections (class-wise Soft-NMS or NMS) and log ``<stage>_map`` (mean over
    ``tiou_thresholds``) and ``<stage>_map@<t>`` (:class:`~visionkit.metrics.TemporalActionMAP`, gathered
    over DDP ranks); the ImageLogger draws a timeline of ground truth against detections.

    Batches: ``video`` ``(B, T, C, H, W)`` in [0, 1], ``segments`` (list of ``(K_i, 2)`` seconds from the
    clip start), ``segment_labels`` (list of ``(K_i,)``), ``duration`` ``(B,)`` seconds
    (:class:`~visionkit.data.datamodules.SyntheticTALDataModule`, or ``TemporalActionDataModule`` on videos).

    Args:
        backbone, backbone_kwargs, pretrained, checkpoint_path, asset, in_channels, image_size,
            normalize_input: the per-frame backbone, as in :class:`~visionkit.tasks.ClassifierBase` (its
            classifier is dropped: ``num_classes=0``). A task checkpoint (``.ckpt``) gives its ``model.`` part.
        num_classes: action classes (linked from the datamodule).
        mode: ``"reversible"`` (memory-saving backward) or ``"vanilla"`` (plain autograd) for the rewired stages.
        rewire_backbone: rewire the backbone (``False``: the original residual network).
        freeze_backbone: the frozen-feature arm: backbone in eval mode under ``no_grad``, only the head trains.
        norm_eval: OpenTAD's ``norm_eval``: the backbone's norms stay in eval mode, their affine parameters frozen.
        backbone_lr_scale: the backbone's learning rate as a multiple of ``lr`` (OpenTAD: 1e-5 against the
            head's 1e-4 on THUMOS, 0.1; 0.01 on ActivityNet).
        snippet_frames: consecutive frames averaged into one temporal step (1: one step per frame).
        head_width, embed_layers, head_layers, kernel_size, head_dropout: the head
            (:class:`~visionkit.methods.re2tal.head.TemporalHead`).
        center_radius: centre-sampling radius in steps (ActionFormer: 1.5); ``None``: every step inside a segment.
        reg_weight, label_smoothing, loss_normalizer_init: the loss (THUMOS: 1, 0, 100; ActivityNet: 2, 0.1, 200).
        nms: ``"soft"`` (class-wise Gaussian Soft-NMS, ``nms_sigma``: 0.7 as the Re²TAL configs) or ``"hard"``
            (greedy, suppressing tIoU above ``nms_iou_threshold``).
        max_segments: detections kept per clip.
        tiou_thresholds: tIoU thresholds of the mAP (THUMOS: 0.3 to 0.7).
        **kwargs: optimisation arguments of :class:`~visionkit.core.VisionTask` (``lr``, ``weight_decay``, ...).
    """

    monitor = "val_map"
    mode = "max"
    #: the timm model used when ``backbone`` is not given.
    default_backbone: ClassVar[str] = "test_resnet"

    def __init__(
        self,
        backbone: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        asset: str | None = None,
        num_classes: int = 3,
        in_channels: int = 3,
        image_size: int | None = None,
        normalize_input: bool = False,
        mode: Literal["reversible", "vanilla"] = "reversible",
        rewire_backbone: bool = True,
        freeze_backbone: bool = False,
        norm_eval: bool = False,
        backbone_lr_scale: float = 0.1,
        snippet_frames: int = 1,
        head_width: int = 64,
        embed_layers: int = 2,
        head_layers: int = 2,
        kernel_size: int = 3,
        head_dropout: float = 0.0,
        center_radius: float | None = 1.5,
        reg_weight: float = 1.0,
        label_smoothing: float = 0.0,
        loss_normalizer_init: float = 100.0,
        nms: Literal["soft", "hard"] = "soft",
        nms_sigma: float = 0.7,
        nms_iou_threshold: float = 0.5,
        max_segments: int = 100,
        tiou_thresholds: tuple[float, ...] = THUMOS_TIOU,
        **kwargs: Any,
    ) -> None:
        if num_classes < 1:
            raise TALInputError(f"num_classes (action classes) must be at least 1, got {num_classes}")
        if asset and (checkpoint_path or pretrained):
            raise TALInputError(f"{type(self).__name__}: give asset, checkpoint_path or pretrained=True, not several")
        check_mode(mode)
        check_choice("nms", nms, NMS_METHODS, error=TALInputError)
        if not backbone_lr_scale > 0:
            raise TALInputError(f"backbone_lr_scale must be positive, got {backbone_lr_scale}")
        if center_radius is not None and not center_radius > 0:
            raise TALInputError(f"center_radius must be positive steps or None, got {center_radius}")
        if max_segments < 1 or not nms_sigma > 0 or not 0 <= nms_iou_threshold <= 1:
            raise TALInputError(
                f"need max_segments >= 1, nms_sigma > 0 and nms_iou_threshold in [0, 1], got {max_segments}, "
                f"{nms_sigma}, {nms_iou_threshold}")
        backbone = backbone or self.default_backbone  # hparams record the frame's values, so the resolved name
        super().__init__(**kwargs)

    # ---- model ----------------------------------------------------------------------------------------------
    def configure_models(self) -> None:
        hp = self.hparams
        net = network_from_hparams(hp, num_classes=hp.num_classes)  # loads weights with any classifier size
        if not callable(getattr(net, "reset_classifier", None)):
            raise TALInputError(f"backbone '{hp.backbone}' ({type(net).__name__}) has no reset_classifier; expected a timm "
                                "model whose pooled features feed the localization head")
        net.reset_classifier(0)
        if hp.rewire_backbone:
            rewire(net, hp.mode)
        self.normalize = input_normalization(net, hp.in_channels) if hp.normalize_input else nn.Identity()
        self.model = Re2TALLocalizer(
            net, hp.num_classes, frozen=hp.freeze_backbone, norm_eval=hp.norm_eval, snippet_frames=hp.snippet_frames,
            width=hp.head_width, embed_layers=hp.embed_layers, head_layers=hp.head_layers,
            kernel_size=hp.kernel_size, dropout=hp.head_dropout,
        )

    def configure_losses(self) -> None:
        hp = self.hparams
        self.criterion = LocalizationLoss(reg_weight=hp.reg_weight, label_smoothing=hp.label_smoothing,
                                          normalizer_init=hp.loss_normalizer_init)

    def configure_metrics(self) -> None:
        self.metrics = MetricCollection({})
        hp = self.hparams
        self.tal_map = nn.ModuleDict({
            stage: TemporalActionMAP(tuple(hp.tiou_thresholds), num_classes=hp.num_classes) for stage in ("val", "test")
        })

    def optimizer_groups(self) -> list[dict]:
        """The base groups, the backbone's parameters split off at ``lr * backbone_lr_scale``."""
        backbone = {id(p) for p in self.model.backbone.parameters()}
        groups = []
        for group in super().optimizer_groups():
            own = [p for p in group["params"] if id(p) not in backbone]
            shared = [p for p in group["params"] if id(p) in backbone]
            if own:
                groups.append({**group, "params": own})
            if shared:
                groups.append({**group, "params": shared, "lr": self.hparams.lr * self.hparams.backbone_lr_scale})
        return groups

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, L, K), offsets (B, L, 2) in steps)`` for clips ``(B, T, C, H, W)`` in [0, 1]."""
        if not isinstance(video, Tensor) or video.ndim != 5:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise TALInputError(f"video must be a batch of clips (B, T, C, H, W), got {shape}")
        return self.model(self.normalize(video.flatten(0, 1)).view_as(video))

    # ---- steps ----------------------------------------------------------------------------------------------
    def _check_batch(self, batch: dict[str, Any]) -> None:
        missing = [k for k in TAL_KEYS if k not in batch]
        if missing:
            raise TALInputError(
                f"{type(self).__name__} needs batches with {list(TAL_KEYS)} (a temporal action datamodule such as "
                f"SyntheticTALDataModule); missing {missing}, got keys {sorted(batch)}")
        k = self.hparams.num_classes
        for i, labels in enumerate(batch["segment_labels"]):
            bad = labels[(labels < 0) | (labels >= k)]
            if len(bad):
                raise TALInputError(
                    f"segment_labels of sample {i} hold class {int(bad[0])}, outside the task's num_classes={k} (classes "
                    f"0..{k - 1}); set num_classes to the datamodule's")

    def step_seconds(self, batch: dict[str, Any]) -> Tensor:
        """``(B,)`` seconds per temporal step: clip duration / (frames / ``snippet_frames``)."""
        steps = batch["video"].shape[1] // self.hparams.snippet_frames
        return torch.as_tensor(batch["duration"], dtype=torch.float32).reshape(-1).cpu() / max(steps, 1)

    def detections(self, logits: Tensor, offsets: Tensor, batch: dict[str, Any]) -> list[dict[str, Tensor]]:
        """Decoded detections of a batch (segments in seconds from the clip start), one dict per clip."""
        hp = self.hparams
        return decode_segments(
            logits.detach(), offsets.detach(), self.step_seconds(batch),
            torch.as_tensor(batch["duration"]).reshape(-1).cpu(), nms=hp.nms, iou_threshold=hp.nms_iou_threshold,
            sigma=hp.nms_sigma, max_segments=hp.max_segments,
        )

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        self._check_batch(batch)
        logits, offsets = self(batch["video"])
        seconds = self.step_seconds(batch)
        in_steps = [s.to(logits.device, torch.float32) / float(sec) for s, sec in zip(batch["segments"], seconds, strict=True)]
        targets = assign_targets(in_steps, [lab.to(logits.device) for lab in batch["segment_labels"]],
                                 logits.shape[1], self.hparams.num_classes, self.hparams.center_radius)
        out: dict[str, Any] = dict(self.criterion(logits, offsets, targets))
        out["positives"] = out["positives"].float()
        if stage != "train":
            found = self.detections(logits, offsets, batch)
            truth = [{"segments": s, "labels": lab} for s, lab in zip(batch["segments"], batch["segment_labels"], strict=True)]
            self.tal_map[stage].update(found, truth)
            out["detections"], out["probs"] = found, logits.detach().float().sigmoid()
        return out

    def _log_map(self, stage: str) -> None:
        metric = self.tal_map[stage]
        if not metric.update_called:
            return
        values = metric.compute()
        logged = {f"{stage}_{k}": v for k, v in values.items() if k.startswith("map")}
        self.log_dict(logged, prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_map("val")

    def on_test_epoch_end(self) -> None:
        self._log_map("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"detections": one dict per clip (segments in seconds, scores, labels), "index": (B,)}``."""
        logits, offsets = self(batch["video"])
        out: dict[str, Any] = {"detections": self.detections(logits, offsets, batch)}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Any] | None) -> dict[str, Tensor]:
        """``timeline``: per clip, the per-step score, the ground truth and the best detections
        (:func:`~visionkit.methods.re2tal.timeline.timeline_images`)."""
        if outputs and "probs" in outputs and "detections" in outputs:
            probs, found = outputs["probs"], outputs["detections"]
        else:
            logits, offsets = self(batch["video"])
            probs, found = logits.float().sigmoid(), self.detections(logits, offsets, batch)
        return {"timeline": timeline_images(probs, self.step_seconds(batch), batch["segments"], batch["segment_labels"],
                                            found)}


class Re2TALClassificationTask(ClassifierBase):
    """``rewire`` + fine-tune of a timm image classifier (spec A7 items 2-3: recover what rewiring lost).

    The network is built as by :class:`~visionkit.tasks.ClassifierBase` (typically ``checkpoint_path``: the
    trained residual classifier), rewired in :meth:`build_network` (same parameters and state-dict keys, so
    its checkpoints load into the original architecture and back) and fine-tuned in full.

    Args:
        mode: ``"reversible"`` (memory-saving backward) or ``"vanilla"`` (plain autograd).
        norm_eval: keep every norm layer in eval mode with frozen affine parameters (OpenTAD's ``norm_eval``).
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`.
    """

    def __init__(self, mode: Literal["reversible", "vanilla"] = "reversible", norm_eval: bool = False,
                 **kwargs: Any) -> None:
        check_mode(mode)
        super().__init__(**kwargs)

    def build_network(self) -> nn.Module:
        """The classifier of the backbone arguments, rewired in ``mode``."""
        return rewire(super().build_network(), self.hparams.mode)

    def adapt(self, net: nn.Module) -> nn.Module:
        return freeze_norms(net) if self.hparams.norm_eval else net

    def train(self, mode: bool = True) -> Re2TALClassificationTask:
        super().train(mode)
        if self.hparams.norm_eval:
            for norm in norm_modules(self.model):
                norm.eval()
        return self
