"""Pixel-adaptive refinement (PAR, spec §2.7; official ``model/PAR.py``), vectorised.

For image ``I`` ``(B, 3, h, w)`` and masks ``M`` ``(B, K, h', w')`` (first resized to ``h x w``,
bilinear, ``align_corners=True``), with the ``N = 8 * len(dilations)`` neighbours ``n`` at offsets
``d * {-1, 0, 1}^2 \\ {0}`` (replicate padding; official dilations 1, 2, 4, 8, 12, 24, so N = 48)::

    kappa_n     = mean_rgb(-(|I_n - I| / (std_n(I_n) + 1e-8) / w1)^2)   std: unbiased, over the N values
    kappa_pos_n = -(dist_n / (std_n(dist) + 1e-8) / w1)^2              dist: d (axis), sqrt(2) d (diagonal)
    a_n         = softmax_n(kappa) + w2 softmax_n(kappa_pos)           sums to 1 + w2 = 1.01
    M          <- sum_n a_n M_n     (num_iter = 10 times)

so masks that sum to 1 per pixel come out summing to ``(1 + w2)^num_iter`` (1.1046 with the official
settings). The colour term is scale invariant, so images may be in [0, 1] or [0, 255]. The work is
a handful of tensor ops per neighbour offset (never per pixel), at float32 or wider with autocast
off; the output has that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.toco.cam import full_precision, work_dtype
from visionkit.methods.toco.errors import ToCoError

__all__ = ["PAR", "neighbour_offsets"]

#: (dy, dx) of the 8 neighbours of one dilation step, in the official kernel order
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def neighbour_offsets(dilations: Sequence[int]) -> list[tuple[int, int]]:
    """``(dy, dx)`` of every neighbour, dilation-major (8 per dilation)."""
    return [(dy * d, dx * d) for d in dilations for dy, dx in _RING]


def _shifted(x: Tensor, offsets: Sequence[tuple[int, int]], pad: int) -> Tensor:
    """``(B, C, len(offsets), h, w)``: ``x`` ``(B, C, h, w)`` read at each offset, edges replicated."""
    h, w = x.shape[-2:]
    xp = F.pad(x, [pad] * 4, mode="replicate")
    return torch.stack(
        [xp[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w] for dy, dx in offsets], dim=2
    )


class PAR(nn.Module):
    """Refine masks ``(B, K, h', w')`` on images ``(B, C, h, w)``; returns ``(B, K, h, w)``.

    Args:
        dilations: neighbourhood rings (official 1, 2, 4, 8, 12, 24).
        num_iter: propagation steps (official 10).
        w1: colour/position affinity temperature (official 0.3).
        w2: weight of the position term (official 0.01).
    """

    def __init__(
        self,
        dilations: Sequence[int] = (1, 2, 4, 8, 12, 24),
        num_iter: int = 10,
        w1: float = 0.3,
        w2: float = 0.01,
    ) -> None:
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations) or num_iter < 0:
            raise ToCoError(
                f"PAR needs positive dilations and num_iter >= 0, got {list(dilations)} and {num_iter}"
            )
        self.dilations = tuple(int(d) for d in dilations)
        self.num_iter = int(num_iter)
        self.w1, self.w2 = float(w1), float(w2)
        self.offsets = neighbour_offsets(self.dilations)

    def position_weights(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``(N,)`` = ``w2 * softmax(kappa_pos)`` (the same for every pixel)."""
        dist = torch.tensor([math.hypot(dy, dx) for dy, dx in self.offsets], dtype=dtype, device=device)
        kappa = -((dist / (dist.std() + 1e-8) / self.w1) ** 2)
        return self.w2 * kappa.softmax(dim=0)

    def affinity(self, images: Tensor) -> Tensor:
        """``(B, N, h, w)`` neighbour weights ``a_n`` of ``images`` ``(B, C, h, w)`` (float32 or wider).

        One neighbour at a time on cache-sized ``(B, C, h, w)`` views of the padded image (no
        ``(B, C, N, h, w)`` stack): the unbiased ``std`` over the ``N`` neighbours in two passes (sum, then
        squared deviations), then ``kappa_n = sum_c (I_n - I)^2 * s`` with ``s = -1 / (C ((std + 1e-8) w1)^2)``,
        which is ``mean_c -(|I_n - I| / (std + 1e-8) / w1)^2`` up to rounding, and an in-place softmax.
        """
        b, c, h, w = images.shape
        pad = max(self.dilations)
        padded = F.pad(images, [pad] * 4, mode="replicate")
        views = [padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w] for dy, dx in self.offsets]
        n = len(views)
        mean = torch.zeros_like(images)
        for view in views:
            mean.add_(view)
        mean.div_(n)
        var = torch.zeros_like(images)
        for view in views:
            dev = view - mean
            var.addcmul_(dev, dev)
        scale = var.div_(n - 1).sqrt_().add_(1e-8).mul_(self.w1).square_().reciprocal_().mul_(-1.0 / c)
        kappa = images.new_empty(b, n, h, w)
        for k, view in enumerate(views):
            terms = (view - images).square_().mul_(scale)  # (B, C, h, w)
            acc = kappa[:, k].copy_(terms[:, 0])
            for j in range(1, c):
                acc.add_(terms[:, j])
        kappa.sub_(kappa.amax(dim=1, keepdim=True)).exp_()  # softmax over the neighbours, in place
        kappa.div_(kappa.sum(dim=1, keepdim=True))
        pos = self.position_weights(kappa.dtype, kappa.device)
        return kappa.add_(pos[None, :, None, None])

    def forward(self, images: Tensor, masks: Tensor) -> Tensor:
        if images.ndim != 4 or masks.ndim != 4 or images.shape[0] != masks.shape[0]:
            raise ToCoError(
                f"PAR needs images (B, C, h, w) and masks (B, K, h', w'), got {tuple(images.shape)} "
                f"and {tuple(masks.shape)}"
            )
        with full_precision(images):
            dtype = torch.promote_types(work_dtype(images), work_dtype(masks))
            images, masks = images.to(dtype), masks.to(dtype)
            if masks.shape[-2:] != images.shape[-2:]:  # at the same size this resize is the identity
                masks = F.interpolate(masks, size=images.shape[-2:], mode="bilinear", align_corners=True)
            aff = self.affinity(images)[:, None].unbind(2)  # N x (B, 1, h, w)
            pad = max(self.dilations)
            h, w = masks.shape[-2:]
            views = [(slice(pad + dy, pad + dy + h), slice(pad + dx, pad + dx + w)) for dy, dx in self.offsets]
            for _ in range(self.num_iter):
                padded = F.pad(masks, [pad] * 4, mode="replicate")  # once per step, read at every offset
                (rows, cols), *rest = views
                out = torch.mul(padded[..., rows, cols], aff[0])
                for (rows, cols), a in zip(rest, aff[1:], strict=True):  # one neighbour at a time: no
                    out.addcmul_(padded[..., rows, cols], a)  # (B, K, N, h, w) stack; cache-sized operands
                masks = out
        return masks
