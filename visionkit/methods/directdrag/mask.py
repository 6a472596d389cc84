"""Auto soft mask (DXD ``prepare_soft_mask_v4``; spec §2.5, §6.1, §6.14) and its latent-resolution copy.

On the supervision grid (Hs, Ws), with handles ``h_i`` and the original (un-shortened) targets ``t_i``
as integer ``(row, col)``:

1. ``M̃ = 0``; for each pair, ``N = max(|Δrow|, |Δcol|) + 1`` samples ``round((1 - α) h + α t)``,
   ``α = k / (N - 1)`` (0 when N = 1), are set to 1 when inside the grid (a rasterised path);
2. ``M = G_σ * M̃ / (max(G_σ * M̃) + 1e-6)``: OpenCV ``GaussianBlur`` semantics, separable kernel of
   size ``int(4σ) | 1`` (so exactly 0 beyond ``int(4σ) // 2`` px of the path), reflect-101 border,
   one global normalisation over all pairs.

The regulariser uses ``1 - M`` (1 = keep). ``transposed=True`` reproduces the official code, which
unpacks ``(row, col)`` points as ``(x, y)`` and writes ``M̃[col, row]`` — the mask of the transposed
image (a horizontal drag gets a vertical mask). The default is the paper's (non-transposed) mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = [
    "gaussian_blur_reflect101",
    "gaussian_kernel",
    "latent_mask",
    "mask_regulariser",
    "path_map",
    "soft_mask",
]


def gaussian_kernel(sigma: float) -> Tensor:
    """OpenCV's ``getGaussianKernel(int(4σ) | 1, σ)``: (k,) float64, sums to 1."""
    if not sigma > 0:
        raise DirectDragError(f"soft_mask_sigma must be positive, got {sigma}")
    k = int(4 * sigma) | 1
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _reflect101(n: int, radius: int) -> Tensor:
    """Indices of a reflect-101 (``gfedcb|abcdefgh|gfedcba``) padding of a length-``n`` axis by ``radius``."""
    i = torch.arange(-radius, n + radius)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j >= n, period - j, j)


def gaussian_blur_reflect101(img: Tensor, sigma: float) -> Tensor:
    """Blur a (H, W) map like ``cv2.GaussianBlur(img, (k, k), σ)`` with k = ``int(4σ) | 1`` (float64 out)."""
    g = gaussian_kernel(sigma)
    r = (g.numel() - 1) // 2
    h, w = img.shape
    x = img.to(torch.float64)[None, None]
    x = x.index_select(3, _reflect101(w, r))
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    x = x.index_select(2, _reflect101(h, r))
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return x[0, 0]


def path_map(handles: Tensor, targets: Tensor, grid: tuple[int, int], transposed: bool = False) -> Tensor:
    """The binary path map M̃ (Hs, Ws) float64 of straight handle->target segments (points (K, 2) ``(row, col)``)."""
    hs, ws = grid
    m = torch.zeros(hs, ws, dtype=torch.float64)
    for h, t in zip(torch.round(handles.double()), torch.round(targets.double()), strict=True):
        n = int(max(abs(float(t[0] - h[0])), abs(float(t[1] - h[1])))) + 1
        alpha = (
            torch.arange(n, dtype=torch.float64) / (n - 1) if n > 1 else torch.zeros(1, dtype=torch.float64)
        )
        pts = torch.round((1 - alpha)[:, None] * h + alpha[:, None] * t).long()
        if transposed:  # official v4: (row, col) unpacked as (x, y), written at [col, row]
            pts = pts.flip(1)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < hs) & (pts[:, 1] >= 0) & (pts[:, 1] < ws)
        pts = pts[inside]
        m[pts[:, 0], pts[:, 1]] = 1.0
    return m


def soft_mask(
    handles: Tensor, targets: Tensor, grid: tuple[int, int], sigma: float, transposed: bool = False
) -> Tensor:
    """The soft mask M (1, 1, Hs, Ws) float32 in [0, 1) (max = 1 / (1 + 1e-6)), 1 = editable.

    ``handles``/``targets``: (K, 2) ``(row, col)`` supervision-grid points, ``sigma`` in grid pixels
    (official 30 at a 256 grid), ``transposed`` the official orientation bug (see module docstring).
    """
    if handles.shape != targets.shape or handles.ndim != 2 or handles.shape[1] != 2:
        raise DirectDragError(
            f"handles and targets must both be (K, 2), got {tuple(handles.shape)}, {tuple(targets.shape)}"
        )
    blurred = gaussian_blur_reflect101(path_map(handles, targets, grid, transposed), sigma)
    if not math.isfinite(float(blurred.max())) or float(blurred.max()) <= 0:
        return torch.zeros(1, 1, *grid)
    return (blurred / (blurred.max() + 1e-6)).float()[None, None]


def latent_mask(mask: Tensor, latent_size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour downsample of M (1, 1, Hs, Ws) to the latent (1, 1, h, w) (broadcast over channels)."""
    return F.interpolate(mask, size=latent_size, mode="nearest")


def mask_regulariser(z_prev: Tensor, z_orig_prev: Tensor, mask_lat: Tensor, lam: float) -> Tensor:
    """``λ Σ_{c,y,x} (1 - M_lat) |ẑ_prev - x^orig_prev|`` (a 0-dim tensor; summed, not averaged, spec §2.6).

    ``z_prev``: the DDIM step of the edit latent (1, C, h, w), with grad; ``z_orig_prev``: the reference
    trajectory's step output (detached here); ``mask_lat``: (1, 1, h, w), 1 = editable.
    """
    return lam * ((1 - mask_lat) * (z_prev - z_orig_prev.detach()).abs()).sum()
