"""Latent Warpage Function (FastDrag's LWF as used by DXD; spec §2.4, §6.10), vectorised.

Points are supervision-grid ``(row, col)``; with ``ratio`` = grid / latent size (4 for SD) and
``ρ`` = ``warpage_ratio``: shortened target ``t' = h + ρ (t - h)``, latent handle ``A = h / ratio``,
shift ``s = (t' - h) / ratio``. On the (h, w) latent, O = ((h-1)/2, (w-1)/2), R = |O| (the circle
through the corners). For every latent pixel C and pair i: ``P_i(C)`` is where the ray A_i -> C leaves
the circle, ``k_i = 1 - |A_i C| / |A_i P_i|`` in [0, 1] (1 at the handle: the official 0/0 NaN is
set to 1 here, spec §6.10), ``w_i ∝ 1 / (|C - A_i| + 1e-4)`` normalised, ``m(C) = Σ_i w_i k_i s_i``.

Forward splat: ``z'[clamp(round(C + m(C)))] = z[C]``, first writer in raster order wins. Holes are
filled by BNNI in raster order: the weighted mean (weights 1/k) of the nearest filled pixel at
distance k to the left, right, up and down, with an explicit filled mask (not the official
"channel 0 == 0" test); holes filled earlier count as filled. Only the edit branch's latent is warped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["displacement_field", "latent_warpage"]


def displacement_field(anchors: Tensor, shifts: Tensor, size: tuple[int, int]) -> Tensor:
    """m(C) for every latent pixel: (h, w, 2) float64 ``(drow, dcol)``; ``anchors``/``shifts`` (K, 2) latent px."""
    h, w = size
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    c = torch.stack([rows, cols], dim=-1)[None]  # (1, h, w, 2)
    a = anchors.double()[:, None, None, :]  # (K, 1, 1, 2)
    o = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64)
    radius = float(o.norm())
    diff = c - a
    dist = diff.norm(dim=-1)  # |A C|, (K, h, w)
    u = diff / dist.clamp_min(1e-12)[..., None]
    ao = a - o
    b = (u * ao).sum(-1)
    cc = (ao * ao).sum(-1) - radius**2  # <= 0 for a handle inside the circle
    lam = -b + torch.sqrt((b * b - cc).clamp_min(0.0))  # |A P|
    k = torch.where(dist > 0, 1 - dist / lam.clamp_min(1e-12), torch.ones_like(dist)).clamp(0.0, 1.0)
    wts = 1.0 / (dist + 1e-4)
    wts = wts / wts.sum(0, keepdim=True)
    return ((wts * k)[..., None] * shifts.double()[:, None, None, :]).sum(0)


def _fill_holes(out: Tensor, filled: Tensor) -> Tensor:
    """BNNI in raster order (see module docstring); ``out`` (C, h, w) and ``filled`` (h, w) bool, in place."""
    h, w = filled.shape
    for idx in torch.nonzero(~filled).tolist():
        r, c = idx
        acc = torch.zeros_like(out[:, r, c])
        total = 0.0
        for line, pos, store in ((filled[r], c, out[:, r, :]), (filled[:, c], r, out[:, :, c])):
            hits = torch.nonzero(line).flatten()
            before, after = hits[hits < pos], hits[hits > pos]
            for j in ([int(before.max())] if len(before) else []) + (
                [int(after.min())] if len(after) else []
            ):
                wgt = 1.0 / abs(j - pos)
                acc = acc + wgt * store[:, j]
                total += wgt
        if total > 0:
            out[:, r, c] = acc / total
            filled[r, c] = True
    return out


def latent_warpage(
    z: Tensor, handles: Tensor, targets: Tensor, ratio: float = 0.15, sup_to_latent: int = 4
) -> Tensor:
    """Warp the edit latent ``z`` (1, C, h, w) along the shortened drags; returns a new (1, C, h, w) tensor.

    ``handles``/``targets``: (K, 2) supervision-grid ``(row, col)``; ``ratio`` = ρ; ``sup_to_latent`` =
    grid / latent size. ρ = 0 or zero shifts give ``z`` back unchanged.
    """
    if z.ndim != 4 or z.shape[0] != 1:
        raise DirectDragError(f"latent_warpage expects a (1, C, h, w) latent, got {tuple(z.shape)}")
    _, ch, h, w = z.shape
    anchors = handles.double() / sup_to_latent
    shifts = ratio * (targets.double() - handles.double()) / sup_to_latent
    m = displacement_field(anchors, shifts, (h, w))
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    qr = torch.round(rows + m[..., 0]).long().clamp(0, h - 1)
    qc = torch.round(cols + m[..., 1]).long().clamp(0, w - 1)
    dest = (qr * w + qc).flatten()
    src = torch.arange(h * w)
    first = torch.full((h * w,), h * w, dtype=torch.long).scatter_reduce(0, dest, src, reduce="amin")
    filled = first < h * w
    flat = z[0].reshape(ch, h * w)
    out = torch.zeros_like(flat)
    out[:, filled] = flat[:, first[filled]]
    out = _fill_holes(out.reshape(ch, h, w), filled.reshape(h, w).clone())
    return out[None]
