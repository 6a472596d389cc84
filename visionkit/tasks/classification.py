"""``ClassifierBase`` (backbone, loss, metric and panels of every classifier task) and ``ClassificationTask``
(fine-tune in full, as a linear probe, or with LoRA)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from visionkit.backbones.factory import classifier_prefixes, input_normalization
from visionkit.core.task import VisionTask
from visionkit.errors import check_choice
from visionkit.tasks.networks import network_from_hparams
from visionkit.tuners import BaseTuner, LoRATuner
from visionkit.utils.viz import annotate


class ClassifierBase(VisionTask):
    """A timm image classifier: the backbone arguments, cross-entropy, accuracy and prediction panels.

    Every classification task derives from it and declares only its own arguments; the backbone
    and optimisation arguments below come from here and from :class:`VisionTask`. A subclass
    implements :meth:`adapt` (how the built network is tuned) and may override
    :meth:`build_network` (where the weights come from, or a rewrite of the layers).

    Args:
        backbone: timm model name (``test_resnet``, ``resnet18``, ``vit_small_patch16_224``, ...);
            ``None``: the task's ``default_backbone``.
        backbone_kwargs: extra ``timm.create_model`` arguments (``img_size``, ``patch_size``, ...).
        pretrained: fetch hub weights (needs network); prefer ``checkpoint_path`` offline.
        checkpoint_path: local ``.safetensors``/``.pth`` weights; a classifier of another size is re-initialised.
        asset: a shipped pretrained backbone (``"shapes_test_vit"``, see ``assets/README.md``); replaces
            ``backbone``, ``backbone_kwargs`` and ``checkpoint_path`` with the asset's recipe and weights.
        num_classes: number of classes (linked from the datamodule by the CLI).
        in_channels: input channels (linked from the datamodule).
        image_size: input side in pixels (linked from the datamodule); sets ``img_size`` of ViTs.
        normalize_input: apply the backbone's mean/std (``pretrained_cfg``) to the [0, 1] images;
            turn it on for ImageNet-style hub or local weights.
        label_smoothing: cross-entropy label smoothing.
        **kwargs: optimisation arguments of :class:`VisionTask` (``lr``, ``weight_decay``, ...).
    """

    monitor = "val_acc"
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
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | None = None,
        normalize_input: bool = False,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if asset and (checkpoint_path or pretrained):
            raise ValueError(f"{type(self).__name__}: give asset, checkpoint_path or pretrained=True, not several")
        backbone = backbone or self.default_backbone  # hparams record the frame's values, so the resolved name
        super().__init__(**kwargs)

    def build_network(self) -> nn.Module:
        """The timm network from ``asset``, or ``backbone`` (+ ``pretrained`` / ``checkpoint_path``), before :meth:`adapt`.

        Subclasses override this to rewrite the network (e.g. convert its layers).
        """
        return network_from_hparams(self.hparams, self.hparams.num_classes)

    @abstractmethod
    def adapt(self, net: nn.Module) -> nn.Module:
        """Wrap the built network for training (a tuner, a side network, ...); the result is ``self.model``."""

    def configure_models(self) -> None:
        net = self.build_network()
        self.normalize = input_normalization(net, self.hparams.in_channels) if self.hparams.normalize_input else nn.Identity()
        self.model = self.adapt(net)

    def configure_metrics(self) -> None:
        self.metrics = MetricCollection({"acc": MulticlassAccuracy(self.hparams.num_classes, average="micro")})

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` for images ``(B, C, H, W)`` in [0, 1]."""
        return self.model(self.normalize(images))

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        return {"loss": loss, "preds": logits, "target": batch["label"]}

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        images = super().visualize(batch, outputs)["input"]
        logits = outputs["preds"] if outputs and "preds" in outputs else self(batch["image"])
        pred = logits.argmax(-1)
        correct = pred == batch["label"] if "label" in batch else torch.ones_like(pred, dtype=torch.bool)
        names = self._class_names()
        return {"predictions": annotate(images, [names[int(p)] if names else f"class {int(p)}" for p in pred], correct)}

    def _class_names(self) -> list[str] | None:
        """Class names from the attached datamodule's training set, when there is one."""
        try:
            classes = self.trainer.datamodule.dataset("train").classes
        except (AttributeError, RuntimeError, TypeError, OSError):
            return None
        return list(classes) if len(classes) == self.hparams.num_classes else None


class ClassificationTask(ClassifierBase):
    """Image classification with a timm backbone, fine-tuned in full, as a linear probe or with LoRA;
    the baseline of every method.

    Args:
        finetune: ``"full"`` (every weight), ``"linear"`` (frozen backbone and BatchNorm
            statistics, trained classifier) or ``"lora"`` (peft LoRA adapters + classifier).
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator.
        lora_targets: module names to adapt; default: ``qkv`` of ViTs, else every Linear/Conv2d.
        **kwargs: backbone and optimisation arguments of :class:`ClassifierBase`.
    """

    def __init__(
        self,
        finetune: Literal["full", "linear", "lora"] = "full",
        lora_r: int = 8,
        lora_alpha: float = 16.0,
        lora_targets: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        check_choice("finetune", finetune, ("full", "linear", "lora"))
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        hp = self.hparams
        head = classifier_prefixes(net)
        if hp.finetune == "linear":
            return BaseTuner(net, trainable=head)
        if hp.finetune == "lora":
            return LoRATuner(net, r=hp.lora_r, alpha=hp.lora_alpha, targets=hp.lora_targets, trainable=head)
        return net
