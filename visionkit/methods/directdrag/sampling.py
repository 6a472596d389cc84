"""Points, bilinear patch sampling, motion supervision and point tracking (spec §2.0, §2.6; GoodDrag/DXD).

Coordinate conventions (spec §6.1):

* user / DragBench points are full-resolution pixels ``(x, y) = (col, row)`` of an H x W image,
  a flat list ``[h1, t1, h2, t2, ...]`` (even = handle, odd = target);
* internally every point is ``(row, col)`` on the **supervision grid** ``(Hs, Ws) = (int(H/2), int(W/2))``:
  ``p = round([y Hs / H, x Ws / W])`` (Python/torch round-half-even, as the official ``round``), float tensors;
* the latent is ``ratio`` times coarser than the supervision grid (4 for SD: grid = image / 2, latent = image / 8).

Features ``F0, F1`` are (1, C, Hs, Ws). Radii ``r1`` (motion-supervision patch half-size), ``r2``
(tracking window half-size) and the step ``beta`` are supervision-grid pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = [
    "bilinear_patch",
    "grid_size",
    "grid_to_xy",
    "motion_supervision_loss",
    "split_points",
    "track_points",
    "xy_to_grid",
]


def grid_size(height: int, width: int) -> tuple[int, int]:
    """The supervision grid ``(Hs, Ws) = (int(H/2), int(W/2))`` of an H x W image (official ``sup_res``)."""
    return int(0.5 * height), int(0.5 * width)


def split_points(points: Sequence[Sequence[float]]) -> tuple[Tensor, Tensor]:
    """A flat ``[h1, t1, h2, t2, ...]`` list of ``(x, y)`` pairs -> handles, targets, each (K, 2) ``(x, y)``."""
    pts = torch.as_tensor(points, dtype=torch.float32)
    if pts.numel() == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DirectDragError(f"every point must be an (x, y) pair, got an array of shape {tuple(pts.shape)}")
    if len(pts) % 2:
        raise DirectDragError(
            f"points must alternate handle and target (an even count), got {len(pts)} points"
        )
    return pts[0::2], pts[1::2]


def xy_to_grid(xy: Tensor, image_size: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """Full-resolution ``(x, y)`` points (K, 2) -> supervision-grid ``(row, col)`` (K, 2), rounded.

    ``image_size`` is ``(H, W)``, ``grid`` is ``(Hs, Ws)``; raises if a point lies outside the image.
    """
    h, w = image_size
    xy = torch.as_tensor(xy, dtype=torch.float64).reshape(-1, 2)
    bad = (xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0) | (xy[:, 1] > h - 1)
    if bool(bad.any()):
        x, y = xy[bad][0].tolist()
        raise DirectDragError(f"point (x={x:g}, y={y:g}) lies outside the {w}x{h} image")
    rows = torch.round(xy[:, 1] * grid[0] / h)
    cols = torch.round(xy[:, 0] * grid[1] / w)
    return torch.stack([rows, cols], dim=1).float()


def grid_to_xy(rc: Tensor, image_size: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """Supervision-grid ``(row, col)`` (K, 2) -> full-resolution ``(x, y)`` (K, 2) floats (the inverse scaling)."""
    h, w = image_size
    rc = torch.as_tensor(rc, dtype=torch.float64).reshape(-1, 2)
    return torch.stack([rc[:, 1] * w / grid[1], rc[:, 0] * h / grid[0]], dim=1).float()


def bilinear_patch(feat: Tensor, center: Tensor, radius: int) -> Tensor:
    """The (2r+1)^2 patch of ``feat`` (B, C, H, W) around a real-valued ``center`` ``(row, col)``.

    GoodDrag's ``interpolate_feature_patch``: four integer-shifted slices (floor and floor + 1 in each
    axis) with weights ``(1-a)(1-b), a(1-b), (1-a)b, ab`` (a = row fraction, b = col fraction); at an
    integer centre it is the plain slice. Differentiable in ``feat`` and ``center``. The patch and its
    +1 neighbours must lie inside the map (no border protection, as the official code); else raises.
    Returns (B, C, 2r+1, 2r+1).
    """
    y = center[0] - radius
    x = center[1] - radius
    y0, x0 = torch.floor(y), torch.floor(x)
    iy, ix = int(y0), int(x0)
    size = 2 * radius + 1
    _, _, h, w = feat.shape
    need_y = size + (1 if float(y) > float(y0) else 0)  # the +1 row is only read with a non-zero weight
    need_x = size + (1 if float(x) > float(x0) else 0)
    if iy < 0 or ix < 0 or iy + need_y > h or ix + need_x > w:
        raise DirectDragError(
            f"a {size}x{size} patch at (row={float(center[0]):g}, col={float(center[1]):g}) "
            f"leaves the {h}x{w} feature map"
        )
    a = (y - y0).to(feat.dtype)
    b = (x - x0).to(feat.dtype)

    def cut(dy: int, dx: int) -> Tensor:
        part = feat[:, :, iy + dy : iy + dy + size, ix + dx : ix + dx + size]
        if part.shape[-2:] != (size, size):  # only reached with a zero weight at the last row/col
            part = F.pad(part, (0, size - part.shape[-1], 0, size - part.shape[-2]))
        return part

    return (
        cut(0, 0) * (1 - a) * (1 - b) + cut(1, 0) * a * (1 - b) + cut(0, 1) * (1 - a) * b + cut(1, 1) * a * b
    )


def motion_supervision_loss(
    f0: Tensor,
    f1: Tensor,
    handles_init: Tensor,
    handles: Tensor,
    targets: Tensor,
    r1: int,
    beta: float,
    reach: float = 2.0,
    reference: Literal["initial", "current"] = "initial",
) -> Tensor:
    """Motion supervision summed over pairs (a 0-dim tensor).

    For every pair with ``D = |t_j - p_j| >= reach``: ``d_j = (t_j - p_j) / D * min(beta, D)`` and

    * ``reference="initial"`` (GoodDrag/DXD, information-preserving):
      ``L += (2 r1)^2 * mean|F0[h0_j ± r1] - bilinear(F1, p_j + d_j, r1)|``;
    * ``reference="current"`` (DragDiffusion, ``f0`` unused):
      ``L += (2 r1 + 1)^2 * mean|F1[int(p_j) ± r1] - bilinear(F1, p_j + d_j, r1)|``;

    the reference patch is detached, the mean runs over C x patch. ``f0, f1``: (1, C, Hs, Ws); points
    (K, 2) ``(row, col)`` on the grid; ``handles_init`` are the original handles ``h0`` (integers),
    ``handles`` the current tracked ``p``. Pairs closer than ``reach`` are skipped; the result is 0
    (no graph to ``f1``) when all are.
    """
    loss = f1.new_zeros(())
    ref = f0.detach() if reference == "initial" else f1.detach()
    weight = (2 * r1) ** 2 if reference == "initial" else (2 * r1 + 1) ** 2
    for h0, p, t in zip(handles_init, handles, targets, strict=True):
        dist = (t - p).norm()
        if float(dist) < reach:
            continue
        d = (t - p) / dist * min(float(beta), float(dist))
        r, c = (int(h0[0]), int(h0[1])) if reference == "initial" else (int(p[0]), int(p[1]))
        if r - r1 < 0 or c - r1 < 0 or r + r1 + 1 > ref.shape[-2] or c + r1 + 1 > ref.shape[-1]:
            raise DirectDragError(
                f"the handle (row={r}, col={c}) is closer than r1={r1} to the feature border"
            )
        patch0 = ref[:, :, r - r1 : r + r1 + 1, c - r1 : c + r1 + 1]
        patch1 = bilinear_patch(f1, (p + d).to(f1.dtype), r1)
        loss = loss + weight * F.l1_loss(patch1, patch0)
    return loss


@torch.no_grad()
def track_points(
    f0: Tensor,
    f1: Tensor,
    handles_init: Tensor,
    handles: Tensor,
    r2: int,
    border: Literal["zero_pad", "clip"] = "zero_pad",
) -> Tensor:
    """Point tracking: nearest neighbour (L1 over channels) of ``F0[h0_j]`` in a (2 r2 + 1)^2 window of ``F1``.

    The window is centred on ``int(p_j)``; ``border="zero_pad"`` (DXD) pads ``F1`` with zeros and sets
    ``p_j <- p_j - r2 + argmin``; ``"clip"`` (DragDiffusion) cuts the window at the border. Ties go to
    the first minimum in raster order. ``f0, f1``: (1, C, Hs, Ws); points (K, 2) ``(row, col)``.
    Returns the new (K, 2) float points (integers).
    """
    if border == "clip":
        return _track_clipped(f0, f1, handles_init, handles, r2)
    padded = F.pad(f1, (r2, r2, r2, r2))
    size = 2 * r2 + 1
    out = []
    for h0, p in zip(handles_init, handles, strict=True):
        ref = f0[0, :, int(h0[0]), int(h0[1])]
        r, c = int(p[0]), int(p[1])
        window = padded[0, :, r : r + size, c : c + size]
        if window.shape[-2:] != (size, size):
            raise DirectDragError(
                f"tracked point (row={r}, col={c}) lies outside the {tuple(f1.shape[-2:])} grid"
            )
        dist = (window - ref[:, None, None]).abs().sum(0)
        idx = int(torch.argmin(dist))
        out.append([r - r2 + idx // size, c - r2 + idx % size])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 2)


def _track_clipped(f0: Tensor, f1: Tensor, handles_init: Tensor, handles: Tensor, r2: int) -> Tensor:
    """DragDiffusion's tracking: the window ``[max(0, p - r2), min(dim, p + r2 + 1))`` per axis."""
    _, _, h, w = f1.shape
    out = []
    for h0, p in zip(handles_init, handles, strict=True):
        ref = f0[0, :, int(h0[0]), int(h0[1])]
        r0, r1_ = max(0, int(p[0]) - r2), min(h, int(p[0]) + r2 + 1)
        c0, c1 = max(0, int(p[1]) - r2), min(w, int(p[1]) + r2 + 1)
        if r0 >= r1_ or c0 >= c1:
            raise DirectDragError(
                f"tracked point (row={int(p[0])}, col={int(p[1])}) lies outside the {h}x{w} grid"
            )
        dist = (f1[0, :, r0:r1_, c0:c1] - ref[:, None, None]).abs().sum(0)
        idx = int(torch.argmin(dist))
        out.append([r0 + idx // (c1 - c0), c0 + idx % (c1 - c0)])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 2)
