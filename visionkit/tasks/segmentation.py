"""``SegmenterBase`` (backbone, per-pixel loss, mIoU and mask panels of every semantic-segmentation task) and
``SegmentationTask`` (the baseline: a linear head on the backbone's last layer, frozen or fine-tuned).

Class convention (the zoo's, shared with :class:`~visionkit.data.datamodules.VOCSegmentationDataModule` and
:class:`~visionkit.data.datamodules.SyntheticMultiShapesDataModule`): ``num_classes`` counts the foreground
classes (the image-label width the CLI links from the data); masks hold 0 for background, ``1..num_classes``
for the classes and ``ignore_index`` (255) for pixels that count nowhere, so every segmenter predicts
``num_classes + 1`` channels.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.backbones.factory import input_normalization
from visionkit.backbones.intermediates import Intermediates
from visionkit.core.task import STAGES, VisionTask
from visionkit.errors import check_choice
from visionkit.metrics.segmentation import CONVENTIONS, SegmentationIoU
from visionkit.tasks.networks import network_from_hparams
from visionkit.tuners import SideTuner
from visionkit.utils.viz import mask_colours

__all__ = ["LastLayerHead", "SegmentationTask", "SegmenterBase"]


class SegmenterBase(VisionTask):
    """A timm backbone adapted to per-pixel classification: cross-entropy, dataset-level mIoU and mask panels.

    A subclass implements :meth:`adapt`: the built network -> a module mapping normalised images
    ``(B, C, H, W)`` to class scores ``(B, num_classes + 1, h, w)`` at any resolution ``h x w``; the scores
    are resized bilinearly to the mask's size for the loss, the metric and the panels.

    Logged per stage: ``<stage>_loss``; at each validation/test epoch end ``<stage>_miou``,
    ``<stage>_pixel_acc`` and ``<stage>_iou/<class>`` from one confusion matrix summed over the epoch's
    batches and DDP ranks (:class:`~visionkit.metrics.SegmentationIoU`); ``train_miou`` too on the
    training batches.

    Args:
        backbone, backbone_kwargs, pretrained, checkpoint_path, asset, in_channels, image_size,
            normalize_input: the backbone, as in :class:`~visionkit.tasks.ClassifierBase`.
        num_classes: foreground classes (linked from the datamodule); the masks have ``num_classes + 1``.
        ignore_index: mask value skipped by the loss and the metric (255 in VOC).
        convention: mean-IoU convention, ``"official"`` (classes absent from the ground truth are left out)
            or ``"torchmetrics"`` (see :mod:`visionkit.metrics.segmentation`).
        class_names: the foreground classes' names for the per-class IoU keys (default ``class1``, ...).
        **kwargs: optimisation arguments of :class:`VisionTask` (``lr``, ``weight_decay``, ...).
    """

    monitor = "val_miou"
    mode = "max"
    #: the timm model used when ``backbone`` is not given.
    default_backbone: ClassVar[str] = "test_vit"

    def __init__(
        self,
        backbone: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        asset: str | None = None,
        num_classes: int = 4,
        in_channels: int = 3,
        image_size: int | None = None,
        normalize_input: bool = False,
        ignore_index: int = 255,
        convention: Literal["official", "torchmetrics"] = "official",
        class_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes (foreground classes) must be at least 1, got {num_classes}")
        if 0 <= ignore_index <= num_classes:
            raise ValueError(f"ignore_index={ignore_index} is a class index (0..{num_classes}); use a value "
                             f"outside the classes, such as 255")
        check_choice("convention", convention, CONVENTIONS)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must name the {num_classes} foreground classes, got {len(class_names)} names")
        if asset and (checkpoint_path or pretrained):
            raise ValueError(f"{type(self).__name__}: give asset, checkpoint_path or pretrained=True, not several")
        backbone = backbone or self.default_backbone  # hparams record the frame's values, so the resolved name
        super().__init__(**kwargs)

    @property
    def num_mask_classes(self) -> int:
        """Channels of the scores: background + ``num_classes``."""
        return self.hparams.num_classes + 1

    # ---- model ---------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """The timm network the backbone arguments describe (its classifier is the adapter's to drop or keep)."""
        return network_from_hparams(self.hparams, self.num_mask_classes)

    @abstractmethod
    def adapt(self, net: nn.Module) -> nn.Module:
        """Wrap the built network into ``images -> (B, num_classes + 1, h, w)`` scores; the result is ``self.model``."""

    def configure_models(self) -> None:
        net = self.build_network()
        self.normalize = input_normalization(net, self.hparams.in_channels) if self.hparams.normalize_input else nn.Identity()
        self.model = self.adapt(net)

    def configure_metrics(self) -> None:
        # The IoU metric returns a dict; it is updated and logged here, not through VisionTask's collection.
        super().configure_metrics()
        hp = self.hparams
        self.iou = nn.ModuleDict({
            f"{stage}_iou": SegmentationIoU(self.num_mask_classes, hp.ignore_index, hp.convention, self._class_names())
            for stage in STAGES
        })

    def _class_names(self) -> list[str]:
        names = self.hparams.class_names or [f"class{c}" for c in range(1, self.num_mask_classes)]
        return ["background", *names]

    # ---- steps ---------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Class scores ``(B, num_classes + 1, H, W)`` at the input resolution, for images in [0, 1]."""
        scores = self.model(self.normalize(images))
        return _resize(scores, images.shape[-2:])

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        if "mask" not in batch:
            raise ValueError(f"{type(self).__name__} trains on per-pixel masks: the batch has no 'mask' "
                             f"(keys {sorted(batch)}); use a datamodule with masks")
        mask = batch["mask"]
        scores = _resize(self.model(self.normalize(batch["image"])), mask.shape[-2:])
        ignore = self.hparams.ignore_index
        counted = (mask != ignore).sum().clamp_min(1)  # a batch of ignored pixels only gives 0, not NaN
        loss = F.cross_entropy(scores.float(), mask, ignore_index=ignore, reduction="sum") / counted
        self.iou[f"{stage}_iou"].update(scores.detach(), mask)
        return {"loss": loss, "scores": scores}

    def _log_iou(self, stage: str) -> None:
        metric = self.iou[f"{stage}_iou"]
        if not metric.update_called:
            return
        values = metric.compute()  # the confusion matrix is summed over ranks inside compute()
        self.log(f"{stage}_miou", values.pop("miou"), prog_bar=stage != "train", sync_dist=False)
        self.log_dict({f"{stage}_{k}": v for k, v in values.items()}, sync_dist=False)
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_iou("train")

    def on_validation_epoch_end(self) -> None:
        self._log_iou("val")

    def on_test_epoch_end(self) -> None:
        self._log_iou("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"mask": (B, H, W) int64 predicted classes, "probs": (B, num_classes + 1, H, W)}`` plus ``index``/``path``."""
        probs = self(batch["image"]).float().softmax(1)
        out: dict[str, Any] = {"mask": probs.argmax(1), "probs": probs}
        for key in ("index", "path"):
            if key in batch:
                out[key] = batch[key]
        return out

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """The input, the predicted mask and (when the batch has one) the ground-truth mask."""
        panels = super().visualize(batch, outputs)
        scores = outputs["scores"] if outputs and "scores" in outputs else self(batch["image"])
        pred = _resize(scores.detach(), batch["image"].shape[-2:]).argmax(1)
        k, ignore = self.num_mask_classes, self.hparams.ignore_index
        panels["prediction"] = mask_colours(pred.cpu(), k, ignore)
        if "mask" in batch:
            panels["ground_truth"] = mask_colours(batch["mask"].cpu(), k, ignore)
        return panels


def _resize(scores: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, K, h, w)`` scores to ``size`` (no-op when it matches)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


class LastLayerHead(nn.Module):
    """A 1x1 convolution on the last backbone level: :class:`Intermediates` -> ``(B, K, h, w)`` scores."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, features: Intermediates) -> Tensor:
        return self.classifier(features.features[-1])


class SegmentationTask(SegmenterBase):
    """Semantic segmentation baseline: a linear (1x1 conv) head on the backbone's last layer.

    ViTs give their last block's tokens after the final norm as a ``(B, D, H/p, W/p)`` map, CNNs their last
    stage; the scores are upsampled bilinearly to the mask.

    Args:
        finetune: ``"linear"`` (frozen backbone, run without autograd; only the head trains) or ``"full"``
            (every backbone weight trains too).
        **kwargs: backbone, class and optimisation arguments of :class:`SegmenterBase`.
    """

    def __init__(self, finetune: Literal["linear", "full"] = "linear", **kwargs: Any) -> None:
        check_choice("finetune", finetune, ("linear", "full"))
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        if hasattr(net, "reset_classifier"):
            net.reset_classifier(0)
        width = int(getattr(net, "num_features", 0) or getattr(net, "embed_dim", 0))
        if not width:
            raise ValueError(f"cannot read the feature width of {type(net).__name__} (no num_features or embed_dim)")
        full = self.hparams.finetune == "full"
        trainable = {n.split(".")[0] for n, _ in net.named_parameters()} if full else ()
        return SideTuner(net, LastLayerHead(width, self.num_mask_classes), indices=1, norm=True, output_fmt="NCHW",
                         prefix_tokens=False, backbone_no_grad=not full, trainable=sorted(set(trainable)))
