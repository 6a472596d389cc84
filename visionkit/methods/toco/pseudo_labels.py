"""Segmentation pseudo labels: CAMs refined by PAR with two background scores (spec §2.7; official
``refine_cams_with_bkg_v2``).

Images (in [0, 1]; quantised to 1/255 like the official uint8 cast unless ``quantise=False``) and
CAMs are resized by ``1/down_scale`` (bilinear). Per image the score stacks ``[high, A_c for the
present classes]`` and ``[low, A_c ...]`` (constant background scores) are soft-maxed over the
channels, refined by PAR, resized back (bilinear, ``align_corners=False``) and arg-maxed. The label
is the high-background result, where that is background -> ignore, where both are background -> 0,
outside ``valid`` -> ignore: foreground must win against a background score of 0.7, background even
against 0.25. All images run in one batch: each holds its present classes in the first slots (the
same order as the official per-image loop), and empty slots get probability 0, which PAR keeps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.toco.cam import check_labels, full_precision, work_dtype
from visionkit.methods.toco.errors import ToCoError
from visionkit.methods.toco.par import PAR

__all__ = ["refine_pseudo_labels"]


def _scores(background: float, cams: Tensor, slot_ok: Tensor) -> Tensor:
    """``softmax([background, cams])`` over channels, empty slots at probability 0."""
    bg = cams.new_full((cams.shape[0], 1, *cams.shape[-2:]), background)
    stack = torch.cat([bg, cams], dim=1)
    keep = torch.cat([slot_ok.new_ones(slot_ok.shape[0], 1), slot_ok], dim=1)
    return stack.masked_fill(~keep[:, :, None, None], -math.inf).softmax(dim=1)


@torch.no_grad()
def refine_pseudo_labels(
    images: Tensor,
    cam: Tensor,
    labels: Tensor,
    par: PAR | None = None,
    *,
    high: float = 0.7,
    low: float = 0.25,
    valid: Tensor | None = None,
    down_scale: int = 2,
    quantise: bool = True,
    ignore_index: int = 255,
    allow_unlabelled: bool = False,
) -> Tensor:
    """Pseudo labels ``(B, H, W)`` (long: 0, ``c+1`` for present classes, ``ignore_index``).

    Args:
        images: ``(B, 3, H, W)`` de-normalised to [0, 1].
        cam: normalised CAMs ``(B, C, H, W)`` (the final multi-scale CAM; the aux one early in COCO).
        labels: ``(B, C)`` multi-hot image labels.
        par: the refiner (default ``PAR()`` with the official settings).
        valid: ``(B, H, W)`` bool image box; outside is ``ignore_index``.
    """
    check_labels(labels, cam, allow_unlabelled)
    if images.ndim != 4 or images.shape[0] != cam.shape[0] or images.shape[-2:] != cam.shape[-2:]:
        raise ToCoError(
            f"refine_pseudo_labels needs images (B, 3, H, W) the size of the CAM {tuple(cam.shape)}, "
            f"got {tuple(images.shape)}"
        )
    if not 0 <= low <= high:
        raise ToCoError(f"pseudo-label thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    par = par if par is not None else PAR()
    b, _, h, w = images.shape
    small = (h // down_scale, w // down_scale)
    with full_precision(images):
        dtype = torch.promote_types(work_dtype(images), work_dtype(cam))
        images, cam = images.to(dtype), cam.to(dtype)
        if quantise:
            images = images.clamp(0, 1).mul_(255).floor_().div_(255)  # floor(255 x) / 255 on a fresh copy
        present = labels > 0
        k = int(present.sum(dim=1).max())
        order = torch.sort((~present).to(torch.uint8), dim=1, stable=True).indices[
            :, :k
        ]  # present classes first
        slot_ok = present.gather(1, order)
        cams = cam.gather(1, order[:, :, None, None].expand(-1, -1, h, w))
        cams = (
            F.interpolate(cams, size=small, mode="bilinear", align_corners=False)
            if k
            else cams.new_zeros(b, 0, *small)
        )
        masks = torch.cat([_scores(high, cams, slot_ok), _scores(low, cams, slot_ok)], dim=1)
        refined = par(F.interpolate(images, size=small, mode="bilinear", align_corners=False), masks)
        refined = F.interpolate(refined, size=(h, w), mode="bilinear", align_corners=False)
    class_of_slot = torch.cat([order.new_zeros(b, 1), order + 1], dim=1)  # slot 0 = background
    # arg-max over channels in a channels-last copy: the same indices (first maximum), but a reduction over
    # contiguous rows (over the strided channel dim it is ~8x slower on CPU)
    last = refined.permute(0, 2, 3, 1).contiguous()
    pick_h = last[..., : k + 1].argmax(dim=-1).flatten(1)
    pick_l = last[..., k + 1 :].argmax(dim=-1).flatten(1)
    label_h = class_of_slot.gather(1, pick_h).view(b, h, w)
    label_l = class_of_slot.gather(1, pick_l).view(b, h, w)
    out = torch.where(label_h == 0, torch.where(label_l == 0, 0, ignore_index), label_h)
    if valid is not None:
        if tuple(valid.shape) != (b, h, w):
            raise ToCoError(f"valid must be a (B, H, W) = {(b, h, w)} mask, got {tuple(valid.shape)}")
        out = torch.where(valid.bool(), out, ignore_index)
    return out
