"""CTC views (spec §2.6): the ROI mask, the local crop sampler and the second global view.

ROI mask from the normalised aux CAM at input resolution (``v = max_c y_c A^m_c``): 0 if
``v <= low`` (background), 2 if ``v >= high`` (confident foreground), 1 otherwise.

Local crops, per image (official ``crop_from_roi_neg``): candidate centres are the inner pixels
``[m, H-m) x [m, W-m)`` (``m = crop_size // 2``) whose ROI is <= 1 (uncertain or background; all
inner pixels when fewer than ``num_crops`` qualify); ``num_crops`` distinct centres are drawn
uniformly; each crop is ``[c - m, c - m + crop_size)`` and lies inside the image. A crop is a
negative (flag 0) iff the mean of its ROI values is <= 0.2, i.e. it is almost all background. The
two global views always have flag 1.

Official bug fixed: the official crops come from a separately augmented image with its own random
flip, so half the time they are mirrored relative to the ROI mask. Pass an image spatially aligned
with the CAM (the main input, or a photometric-only jitter of it) as ``images``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.toco.cam import check_labels
from visionkit.methods.toco.errors import ToCoError

__all__ = ["LocalCrops", "random_resized_crop", "roi_mask", "sample_local_crops"]


def roi_mask(
    cam_aux: Tensor, labels: Tensor, low: float = 0.25, high: float = 0.7, allow_unlabelled: bool = False
) -> Tensor:
    """``(B, H, W)`` long ROI (0 background, 1 uncertain, 2 confident foreground) of ``(B, C, H, W)`` CAMs."""
    check_labels(labels, cam_aux, allow_unlabelled, what="aux cam")
    value = (cam_aux * labels.to(cam_aux.dtype)[:, :, None, None]).amax(dim=1)
    roi = torch.ones_like(value, dtype=torch.long)
    roi = roi.masked_fill(value <= low, 0)
    return roi.masked_fill(value >= high, 2)


class LocalCrops(NamedTuple):
    """Local views for CTC.

    Attributes:
        crops: ``(B, n, C, s, s)``.
        flags: ``(B, 2 + n)`` bool: the two global views (True), then one per crop (False = negative).
        centres: ``(B, n, 2)`` long ``(row, col)`` of each crop centre in input pixels.
    """

    crops: Tensor
    flags: Tensor
    centres: Tensor


def sample_local_crops(
    images: Tensor,
    roi: Tensor,
    num_crops: int = 8,
    crop_size: int = 96,
    negative_ratio: float = 0.2,
    generator: torch.Generator | None = None,
) -> LocalCrops:
    """Draw ``num_crops`` crops per image from the uncertain/background region of ``roi`` ``(B, H, W)``.

    ``generator`` (on any device) makes the draw reproducible; the crops are cut without a Python
    loop over images or pixels.
    """
    if images.ndim != 4 or roi.shape != (images.shape[0], *images.shape[-2:]):
        raise ToCoError(
            f"local crops need images (B, C, H, W) and an ROI mask (B, H, W) of the same size, got "
            f"{tuple(images.shape)} and {tuple(roi.shape)}"
        )
    b, _, h, w = images.shape
    m = crop_size // 2
    hi, wi = h - 2 * m, w - 2 * m
    if crop_size < 1 or num_crops < 1 or hi < 1 or wi < 1 or hi * wi < num_crops:
        raise ToCoError(
            f"cannot cut {num_crops} distinct {crop_size}-px crops from {h}x{w} images "
            f"(centres need a margin of {m} px); use smaller crops or larger images"
        )
    inner = roi[:, m : h - m, m : w - m].reshape(b, -1)
    candidate = inner <= 1
    candidate |= candidate.sum(dim=1, keepdim=True) < num_crops  # fall back to every inner pixel
    device = generator.device if generator is not None else images.device
    scores = torch.rand(inner.shape, generator=generator, device=device).to(images.device)
    index = scores.masked_fill(~candidate, -1.0).topk(num_crops, dim=1).indices  # a uniform k-subset
    centres = torch.stack([index // wi + m, index % wi + m], dim=-1)  # (B, n, 2)
    offsets = torch.arange(crop_size, device=images.device) - m
    rows = (centres[..., 0, None] + offsets)[..., :, None]  # (B, n, s, 1)
    cols = (centres[..., 1, None] + offsets)[..., None, :]  # (B, n, 1, s)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    crops = images[batch, :, rows, cols].permute(0, 1, 4, 2, 3)  # (B, n, s, s, C) -> (B, n, C, s, s)
    roi_sum = roi[batch, rows, cols].sum(dim=(-2, -1))
    negative = roi_sum <= negative_ratio * crop_size * crop_size
    flags = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=images.device), ~negative], dim=1)
    return LocalCrops(crops.contiguous(), flags, centres)


def _crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` as torchvision's ``RandomResizedCrop.get_params`` draws them."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return top, left, ch, cw
    in_ratio = w / h  # fallback: the central crop of the clamped aspect ratio
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(
    images: Tensor,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.4, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    mode: str = "bicubic",
) -> Tensor:
    """The second global view: a random resized crop of each image ``(B, C, H, W) -> (B, C, size)``.

    Official: ``RandomResizedCrop(448, scale=(0.4, 1), bicubic)`` of the original image, on the data
    side; this tensor version serves pipelines that have only the batch. ``generator`` is a CPU
    generator.
    """
    if images.ndim != 4:
        raise ToCoError(f"random_resized_crop expects images (B, C, H, W), got shape {tuple(images.shape)}")
    if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ToCoError(
            f"random_resized_crop needs 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], "
            f"got scale={scale}, ratio={ratio}"
        )
    size = (size, size) if isinstance(size, int) else tuple(size)
    h, w = images.shape[-2:]
    views = []
    for img in images:
        top, left, ch, cw = _crop_box(h, w, scale, ratio, generator)
        patch = img[None, :, top : top + ch, left : left + cw]
        views.append(
            F.interpolate(
                patch, size=size, mode=mode, align_corners=False if mode in ("bilinear", "bicubic") else None
            )
        )
    return torch.cat(views, dim=0)
