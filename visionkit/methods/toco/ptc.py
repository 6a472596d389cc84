"""Patch Token Contrast (PTC, spec §2.5): token pseudo labels, their affinity mask and the loss.

The auxiliary CAM, resized to the token grid ``h x w`` (bilinear), gives token labels ``Y`` by the
training-mode rule of :func:`~visionkit.methods.toco.cam.cam_to_label` (low 0.25, high 0.7; no
grad). Per image, ``R_ij = 1`` if ``Y_i = Y_j`` (background pairs are positives), 0 if they differ,
ignore (255) if either token is ignored and on the diagonal. With ``S_ij = |cos(f_i, f_j)|`` on the
final (post-norm) tokens, sums and counts pooled over the batch::

    L_ptc = 1/2 (1 - sum_{R=1} S / (N+ + 1)) + 1/2 sum_{R=0} S / (N- + 1)        in [0, 1)

Official bug fixed: the official code cuts the token-grid labels with the image box in *input
pixels*, so a padded crop whose box starts at or beyond the grid size loses all its PTC pairs.
:func:`token_labels` maps the box to the grid by the stride (a token is valid when its centre is
inside the box); ``official_box=True`` restores the official slicing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.toco.cam import box_mask, cam_to_label, full_precision, work_dtype
from visionkit.methods.toco.errors import ToCoError

__all__ = ["affinity_mask", "ptc_loss", "token_labels"]


@torch.no_grad()
def token_labels(
    cam_aux: Tensor,
    labels: Tensor,
    grid: tuple[int, int],
    *,
    low: float = 0.25,
    high: float = 0.7,
    img_box: Tensor | None = None,
    official_box: bool = False,
    ignore_index: int = 255,
    allow_unlabelled: bool = False,
) -> Tensor:
    """Token pseudo labels ``(B, h, w)`` from the normalised aux CAM ``(B, C, H, W)`` at input resolution.

    Args:
        grid: ``(h, w)`` token grid.
        img_box: ``(B, 4)`` valid region ``[h0, h1, w0, w1]`` in input pixels, or ``None`` (all valid).
        official_box: slice the grid with the pixel box as the official code does (a bug, see above).
    """
    small = F.interpolate(cam_aux, size=grid, mode="bilinear", align_corners=False)
    valid = None
    if img_box is not None:
        stride = 1.0 if official_box else (cam_aux.shape[-2] / grid[0], cam_aux.shape[-1] / grid[1])
        valid = box_mask(img_box, grid, stride)
    return cam_to_label(
        small,
        labels,
        low=low,
        high=high,
        valid=valid,
        ignore_index=ignore_index,
        allow_unlabelled=allow_unlabelled,
    )


def affinity_mask(token_label: Tensor, ignore_index: int = 255) -> Tensor:
    """``(B, N, N)`` uint8 pair relation from token labels ``(B, h, w)`` or ``(B, N)``: 1 same label,
    0 different, ``ignore_index`` where either token is ignored and on the diagonal."""
    y = token_label.flatten(1)
    if y.ndim != 2:
        raise ToCoError(f"token labels must be (B, h, w) or (B, N), got shape {tuple(token_label.shape)}")
    same = (y[:, :, None] == y[:, None, :]).to(torch.uint8)
    ignored = y == ignore_index
    drop = ignored[:, :, None] | ignored[:, None, :]
    drop |= torch.eye(y.shape[1], dtype=torch.bool, device=y.device)
    return same.masked_fill(drop, ignore_index)


def ptc_loss(features: Tensor, mask: Tensor) -> Tensor:
    """PTC loss (scalar, float32 or wider) of final tokens ``(B, D, h, w)`` under an affinity ``mask``
    ``(B, h*w, h*w)``; gradients reach ``features`` only."""
    b, d = features.shape[:2]
    n = features.shape[-2] * features.shape[-1]
    if features.ndim != 4 or tuple(mask.shape) != (b, n, n):
        raise ToCoError(
            f"ptc_loss needs features (B, D, h, w) and a (B, h*w, h*w) mask, got {tuple(features.shape)} "
            f"and {tuple(mask.shape)}"
        )
    with full_precision(features):
        f = F.normalize(features.reshape(b, d, n).to(work_dtype(features)), p=2, dim=1, eps=1e-8)
        sim = (f.transpose(1, 2) @ f).abs()
    pos, neg = mask == 1, mask == 0
    pos_term = 1 - (sim * pos).sum() / (pos.sum() + 1)
    neg_term = (sim * neg).sum() / (neg.sum() + 1)
    return 0.5 * pos_term + 0.5 * neg_term
