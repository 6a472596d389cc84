"""Lightning tasks of HST: classification (``HSTTask``) and semantic segmentation (``HSTSegmentationTask``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.hst.decoder import HSTSegmenter
from visionkit.methods.hst.model import HST
from visionkit.tasks.classification import ClassifierBase
from visionkit.tasks.segmentation import SegmenterBase
from visionkit.utils.viz import overlay

__all__ = ["HSTSegmentationTask", "HSTTask", "pyramid_panels"]

#: HST constructor arguments that both tasks take (see :class:`HST`).
_HST_ARGS = ("scale", "block_indices", "num_meta_tokens", "drop_path_rate", "detached", "train_vit_norms", "bridge_order")


def _build_hst(net: nn.Module, hparams: Any, num_classes: int) -> HST:
    return HST(net, num_classes, **{k: hparams[k] for k in _HST_ARGS})


def pyramid_panels(images: Tensor, maps: Sequence[Tensor]) -> dict[str, Tensor]:
    """One heat overlay per side stage: the channel-mean absolute activation, min-max scaled per image."""
    panels = {}
    for s, fmap in enumerate(maps):
        heat = fmap.detach().float().abs().mean(1, keepdim=True)
        heat = F.interpolate(heat, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        low = heat.flatten(1).amin(1).view(-1, 1, 1)
        high = heat.flatten(1).amax(1).view(-1, 1, 1)
        panels[f"side_stage{s + 1}_stride{4 * 2 ** s}"] = overlay(images, (heat - low) / (high - low).clamp_min(1e-12))
    return panels


class HSTTask(ClassifierBase):
    """Hierarchical Side-Tuning (Lin et al., 2023) for image classification on any timm ViT/DeiT.

    The ViT is frozen and kept in eval mode; learnable meta tokens enter each block, T-Bridges carry every
    block's patch tokens and meta token into a 4-stage side network (strides 4, 8, 16, 32), whose pooled
    last stage feeds a BatchNorm1d + Linear head. Trainable: the meta tokens, the ViT blocks' LayerNorms,
    the side network and the head. Official semantics (default): gradients flow back through the frozen
    ViT into the meta tokens, so HST saves parameters, not activation memory; ``detached=True`` is
    visionkit's memory-saving variant (ViT under ``no_grad``, no meta tokens, frozen ViT norms).

    Args:
        scale: multiplies the side widths (official 32/48/64/72 at ``scale=1``).
        block_indices: last ViT block of each side stage (default: quarters of the depth).
        num_meta_tokens: meta tokens per ViT block (official 1).
        drop_path_rate: side-network drop-path, ramped linearly over the side blocks.
        detached: the memory-saving variant (not HST's semantics).
        train_vit_norms: train the ViT blocks' LayerNorms (default: ``not detached``).
        bridge_order: ``"auto"``, ``"resize_first"`` (official) or ``"bridge_first"`` (same logits).
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`
            (default backbone ``test_vit``).
    """

    default_backbone: ClassVar[str] = "test_vit"

    def __init__(
        self,
        scale: float = 1.0,
        block_indices: list[int] | None = None,
        num_meta_tokens: int = 1,
        drop_path_rate: float = 0.0,
        detached: bool = False,
        train_vit_norms: bool | None = None,
        bridge_order: Literal["auto", "resize_first", "bridge_first"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        return _build_hst(net, self.hparams, self.hparams.num_classes)

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Predictions and where each side stage responds."""
        panels = super().visualize(batch, outputs)
        with torch.no_grad():
            maps = self.model.pyramid(self.normalize(batch["image"]))
        return {**panels, **pyramid_panels(batch["image"], maps)}


class HSTSegmentationTask(SegmenterBase):
    """HST for semantic segmentation: the side pyramid of a frozen ViT into an FPN-lite decoder.

    The side network's four maps (strides 4-32) feed :class:`~visionkit.methods.hst.decoder.PyramidDecoder`,
    whose stride-4 scores are upsampled to the mask; trained with per-pixel cross-entropy (see
    :class:`~visionkit.tasks.segmentation.SegmenterBase` for the classes, loss and mIoU). Trainable: the
    meta tokens, the ViT blocks' LayerNorms, the side network and the decoder.

    Args:
        decoder_width: channels of the decoder.
        scale, block_indices, num_meta_tokens, drop_path_rate, detached, train_vit_norms, bridge_order:
            HST's, as in :class:`HSTTask`.
        **kwargs: backbone, class and optimisation arguments of :class:`~visionkit.tasks.segmentation.SegmenterBase`
            (default backbone ``test_vit``).
    """

    def __init__(
        self,
        decoder_width: int = 64,
        scale: float = 1.0,
        block_indices: list[int] | None = None,
        num_meta_tokens: int = 1,
        drop_path_rate: float = 0.0,
        detached: bool = False,
        train_vit_norms: bool | None = None,
        bridge_order: Literal["auto", "resize_first", "bridge_first"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        return HSTSegmenter(_build_hst(net, self.hparams, 0), self.num_mask_classes, self.hparams.decoder_width)

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Input, prediction, ground truth and where each side stage responds."""
        panels = super().visualize(batch, outputs)
        with torch.no_grad():
            maps = self.model.hst.pyramid(self.normalize(batch["image"]))
        return {**panels, **pyramid_panels(batch["image"], maps)}
