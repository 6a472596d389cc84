"""The balanced segmentation loss (spec §2.8).

``L_seg = 1/2 (CE over pseudo-background pixels + CE over pseudo-foreground pixels)``, ignore 255,
with the logits bilinearly upsampled to the label size. Deviation from the official code: a half
with no pixels (a batch without foreground, or without background) contributes 0 instead of the
NaN that cross-entropy over an all-ignored target returns, so the loss stays finite (the official
schedule multiplies it by 0 during warm-up, but ``0 * NaN`` is still NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.toco.errors import ToCoError

__all__ = ["balanced_seg_loss"]


def _masked_ce(logits: Tensor, target: Tensor, keep: Tensor, ignore_index: int) -> Tensor:
    """Mean cross-entropy over the ``keep`` pixels (0 when there are none)."""
    per_pixel = F.cross_entropy(
        logits, target.masked_fill(~keep, ignore_index), ignore_index=ignore_index, reduction="none"
    )
    return per_pixel.sum() / keep.sum().clamp(min=1)


def balanced_seg_loss(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Balanced CE of seg logits ``(B, C+1, h, w)`` against pseudo labels ``(B, H, W)`` (0 = background).

    Returns:
        a finite scalar (float32 or wider under autocast).
    """
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0]:
        raise ToCoError(
            f"balanced_seg_loss needs logits (B, C+1, h, w) and labels (B, H, W), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    target = target.long()
    known = target != ignore_index
    bg = _masked_ce(logits, target, known & (target == 0), ignore_index)
    fg = _masked_ce(logits, target, known & (target != 0), ignore_index)
    return 0.5 * (bg + fg).to(torch.promote_types(bg.dtype, torch.float32))
