"""Points and drag losses: spec §5 oracles 7 (bilinear patch sampling), 8 (motion supervision is zero
for an exact translation; gradient supports), 9 (tracking recovers a translation; zero padding at the
border) and 14 (coordinate round trip, no x/y swap on a non-square image)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from visionkit.methods.directdrag import (
    DirectDragError,
    bilinear_patch,
    grid_size,
    grid_to_xy,
    motion_supervision_loss,
    split_points,
    track_points,
    xy_to_grid,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def feats(c: int = 6, h: int = 24, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed))


# oracle 7 -------------------------------------------------------------------------------------------


def test_bilinear_patch_at_integer_centre_is_the_slice() -> None:
    f = feats()
    for r, c in [(5, 7), (10, 4), (19, 23)]:  # the last touches the bottom/right border (no +1 row read)
        patch = bilinear_patch(f, torch.tensor([float(r), float(c)]), 4)
        assert torch.equal(patch, f[:, :, r - 4 : r + 5, c - 4 : c + 5])


def test_bilinear_patch_weights_and_linearity() -> None:
    """Weights are non-negative and sum to 1: a constant map gives the constant; an affine map
    f = a·row + b·col + c is reproduced exactly at fractional centres."""
    const = torch.full((1, 2, 12, 12), 3.5)
    out = bilinear_patch(const, torch.tensor([5.3, 6.8]), 2)
    assert torch.allclose(out, torch.full_like(out, 3.5), atol=1e-6)
    rows = torch.arange(12.0)[:, None].expand(12, 12)
    cols = torch.arange(12.0)[None, :].expand(12, 12)
    affine = (0.7 * rows - 1.3 * cols + 2.0)[None, None]
    centre = torch.tensor([5.25, 4.6])
    got = bilinear_patch(affine, centre, 2)[0, 0]
    dr = torch.arange(-2.0, 3.0)
    expected = 0.7 * (centre[0] + dr[:, None]) - 1.3 * (centre[1] + dr[None, :]) + 2.0
    assert torch.allclose(got, expected, atol=1e-5)
    # a single bright pixel: the four weights (1-a)(1-b), a(1-b), (1-a)b, ab
    spike = torch.zeros(1, 1, 8, 8)
    spike[0, 0, 4, 4] = 1.0
    vals = [
        float(bilinear_patch(spike, torch.tensor([4.0 - dy + 0.25, 4.0 - dx + 0.4]), 0))
        for dy in (0, 1)
        for dx in (0, 1)
    ]
    assert vals == pytest.approx([0.75 * 0.6, 0.75 * 0.4, 0.25 * 0.6, 0.25 * 0.4], abs=1e-6)
    assert all(v >= 0 for v in vals) and sum(vals) == pytest.approx(1.0, abs=1e-6)


def test_bilinear_patch_is_differentiable_and_checks_bounds() -> None:
    f = feats().requires_grad_(True)
    bilinear_patch(f, torch.tensor([8.5, 9.25]), 3).sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    nz = f.grad[0, 0].nonzero()
    assert nz[:, 0].min() == 5 and nz[:, 0].max() == 12 and nz[:, 1].min() == 6 and nz[:, 1].max() == 13
    with pytest.raises(DirectDragError) as info:
        bilinear_patch(feats(), torch.tensor([2.5, 10.0]), 3)
    assert "leaves the 24x28 feature map" in error_of(info)


# oracle 8 -------------------------------------------------------------------------------------------


def test_motion_supervision_zero_for_exact_translation() -> None:
    """F1(y, x) = F0(y, x - 4), p = h0, t = h0 + (0, 9): d = (0, 4) and L_ms = 0 exactly (r1 = 4, β = 4)."""
    f0 = feats(h=32, w=40)
    f1 = torch.roll(f0, shifts=4, dims=3)
    h0 = torch.tensor([[12.0, 14.0]])
    t = torch.tensor([[12.0, 23.0]])
    loss = motion_supervision_loss(f0, f1, h0, h0.clone(), t, r1=4, beta=4.0)
    assert float(loss) == 0.0
    same = motion_supervision_loss(f0, f0.clone(), h0, h0.clone(), t, r1=4, beta=4.0)
    assert float(same) > 1.0  # 64 * mean|Δ| of unit-variance noise ≈ 64 * 1.13


def test_motion_supervision_weight_reduction_and_reach() -> None:
    """L_ms = Σ_j (2 r1)^2 mean|f0 - f1| (64 for r1 = 4); pairs closer than 2 px are skipped."""
    f0, f1 = feats(h=32, w=40, seed=1), feats(h=32, w=40, seed=2)
    h0 = torch.tensor([[12.0, 14.0], [20.0, 20.0]])
    t = torch.tensor([[12.0, 23.0], [21.0, 20.5]])  # the second pair is 1.1 px away: skipped
    loss = motion_supervision_loss(f0, f1, h0, h0.clone(), t, r1=4, beta=4.0)
    expected = 64 * (f0[:, :, 8:17, 10:19] - f1[:, :, 8:17, 14:23]).abs().mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # a short drag (D = 3 < β) moves by D, along the unit direction
    t_short = torch.tensor([[15.0, 14.0]])
    loss_short = motion_supervision_loss(f0, f1, h0[:1], h0[:1].clone(), t_short, r1=4, beta=4.0)
    assert float(loss_short) == pytest.approx(
        float(64 * (f0[:, :, 8:17, 10:19] - f1[:, :, 11:20, 10:19]).abs().mean()), rel=1e-6
    )
    none = motion_supervision_loss(f0, f1, h0, t.clone(), t, r1=4, beta=4.0)
    assert float(none) == 0.0


def test_motion_supervision_gradient_supports() -> None:
    """No gradient to F0 (detached); F1's gradient lives only in the bilinear support around p + d."""
    f0 = feats(h=32, w=40).requires_grad_(True)
    f1 = feats(h=32, w=40, seed=5).requires_grad_(True)
    h0 = torch.tensor([[12.0, 14.0]])
    t = torch.tensor([[15.0, 18.0]])  # D = 5, d = (2.4, 3.2): fractional
    motion_supervision_loss(f0, f1, h0, h0.clone(), t, r1=4, beta=4.0).backward()
    assert f0.grad is None or float(f0.grad.abs().sum()) == 0.0
    support = torch.zeros(32, 40, dtype=torch.bool)
    support[14 - 4 : 15 + 5, 17 - 4 : 18 + 5] = True  # rows floor(14.4) ± 4 (+1), cols floor(17.2) ± 4 (+1)
    g = f1.grad[0].abs().sum(0)
    assert float(g[~support].abs().sum()) == 0.0
    assert bool((g[support] > 0).all())


def test_motion_supervision_dragdiffusion_reference() -> None:
    """DD variant: reference = F1 at int(p) (detached), weight (2 r1 + 1)^2 = 9, unit step."""
    f1 = feats(h=20, w=20, seed=3)
    p = torch.tensor([[8.0, 8.0]])
    t = torch.tensor([[8.0, 14.0]])
    loss = motion_supervision_loss(f1, f1, p, p.clone(), t, r1=1, beta=1.0, reference="current")
    expected = 9 * (f1[:, :, 7:10, 7:10] - f1[:, :, 7:10, 8:11]).abs().mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


# oracle 9 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (3, -5), (-12, 12), (7, 0)])
def test_tracking_recovers_a_translation(dy: int, dx: int) -> None:
    f0 = feats(c=8, h=40, w=40)
    f1 = torch.roll(f0, shifts=(dy, dx), dims=(2, 3))
    h0 = torch.tensor([[20.0, 18.0], [14.0, 25.0]])
    out = track_points(f0, f1, h0, h0.clone(), r2=12)
    assert torch.equal(out, h0 + torch.tensor([float(dy), float(dx)]))


def test_tracking_from_a_moved_point_and_at_the_border() -> None:
    """The window follows the current p (not h0); near the border it is zero-padded and does not crash."""
    f0 = feats(c=8, h=30, w=30)
    f1 = torch.roll(f0, shifts=(2, 10), dims=(2, 3))
    h0 = torch.tensor([[10.0, 10.0]])
    p = torch.tensor([[10.0, 18.0]])  # h0 + (2, 10) is 2 rows / 8 cols from p: inside its r2 = 3 window
    assert torch.equal(track_points(f0, f1, h0, p, r2=3), torch.tensor([[12.0, 20.0]]))
    corner = torch.tensor([[0.0, 29.0]])
    shifted = torch.roll(f0, shifts=(1, -1), dims=(2, 3))
    assert torch.equal(track_points(f0, shifted, corner, corner, r2=12), torch.tensor([[1.0, 28.0]]))
    # the DragDiffusion clipped window agrees away from the border and stays inside the grid at it
    assert torch.equal(
        track_points(f0, shifted, corner, corner, r2=3, border="clip"), torch.tensor([[1.0, 28.0]])
    )
    zero_pad_pick = track_points(f0, torch.zeros_like(f0) + 50.0, corner, corner, r2=3)
    assert zero_pad_pick[0, 0] < 0 or zero_pad_pick[0, 1] > 29  # zeros beyond the border are closest
    clip_pick = track_points(f0, torch.zeros_like(f0) + 50.0, corner, corner, r2=3, border="clip")
    assert 0 <= clip_pick[0, 0] <= 29 and 0 <= clip_pick[0, 1] <= 29


# oracle 14 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(512, 512), (768, 512), (288, 512), (341, 200)])
def test_coordinate_round_trip(h: int, w: int) -> None:
    """(x, y) -> grid (row, col) -> (x, y) within half a grid cell (1 px for even sizes)."""
    grid = grid_size(h, w)
    g = torch.Generator().manual_seed(h + w)
    xy = torch.stack([torch.rand(200, generator=g) * (w - 1), torch.rand(200, generator=g) * (h - 1)], dim=1)
    back = grid_to_xy(xy_to_grid(xy, (h, w), grid), (h, w), grid)
    tol = 0.5 * max(h / grid[0], w / grid[1]) + 1e-4
    assert (back - xy).abs().max() <= tol
    if h % 2 == 0 and w % 2 == 0:
        assert (back - xy).abs().max() <= 1.0 + 1e-4


def test_non_square_point_near_the_bottom_stays_near_the_bottom() -> None:
    """A 768 x 512 (H x W) image: (x=100, y=760) is row 380 of a 384 x 256 grid, col 50 (no x/y swap)."""
    handles, targets = split_points([[100, 760], [110, 700]])
    rc = xy_to_grid(handles, (768, 512), grid_size(768, 512))
    assert grid_size(768, 512) == (384, 256)
    assert rc.tolist() == [[380.0, 50.0]]
    assert targets.tolist() == [[110.0, 700.0]]


def test_bad_points_are_one_line_errors() -> None:
    with pytest.raises(DirectDragError) as info:
        split_points([[1, 2], [3, 4], [5, 6]])
    assert "even count" in error_of(info)
    with pytest.raises(DirectDragError) as info:
        split_points([1, 2, 3])
    assert "(x, y) pair" in error_of(info)
    assert split_points([])[0].shape == (0, 2)
    with pytest.raises(DirectDragError) as info:
        xy_to_grid(torch.tensor([[600.0, 10.0]]), (512, 512), (256, 256))
    assert "outside the 512x512 image" in error_of(info)
