"""Latent Warpage Function: spec §5 oracle 13 (shape, zero shift and ρ = 0 give the identity, the
handle pixel lands at round(A + s), pixels on the circle stay, no holes left after BNNI) plus the
displacement field and BNNI's raster-order weights written out."""

from __future__ import annotations

import pytest
import torch

from visionkit.methods.directdrag.warp import _fill_holes, displacement_field, latent_warpage

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def latent(h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))


def test_shape_and_identities() -> None:
    z = latent(16, 20)
    h, t = torch.tensor([[30.0, 40.0]]), torch.tensor([[30.0, 60.0]])
    assert latent_warpage(z, h, t).shape == z.shape
    assert torch.equal(latent_warpage(z, h, h.clone()), z)  # zero shift (the handle pixel included)
    assert torch.equal(latent_warpage(z, h, t, ratio=0.0), z)  # ρ -> 0
    assert not torch.equal(latent_warpage(z, h, t, ratio=0.5), z)


def test_handle_pixel_lands_at_round_a_plus_s() -> None:
    """Single handle at latent A = (8, 8), s = ρ (t - h) / 4 = (0, 2): z'[8, 10] = z[8, 8]."""
    z = latent()
    h, t = torch.tensor([[32.0, 32.0]]), torch.tensor([[32.0, 48.0]])
    out = latent_warpage(z, h, t, ratio=0.5)
    assert torch.equal(out[0, :, 8, 10], z[0, :, 8, 8])
    # a diagonal shift s = (1.5, -1.25) rounds to (2, -1) (round half to even)
    h2, t2 = torch.tensor([[24.0, 40.0]]), torch.tensor([[36.0, 30.0]])
    out2 = latent_warpage(z, h2, t2, ratio=0.5, sup_to_latent=4)
    assert torch.equal(out2[0, :, 8, 9], z[0, :, 6, 10])


def test_pixels_on_the_circle_do_not_move_and_no_holes_remain() -> None:
    z = latent(12, 16, seed=1)
    h, t = torch.tensor([[20.0, 24.0]]), torch.tensor([[20.0, 56.0]])
    m = displacement_field(h / 4, 0.5 * (t - h) / 4, (12, 16))
    for r, c in [(0, 0), (0, 15), (11, 0), (11, 15)]:  # the corners lie on the circle: k = 0
        assert float(m[r, c].abs().max()) == 0.0
    out = latent_warpage(z, h, t, ratio=0.5)
    for r, c in [(0, 0), (0, 15), (11, 0), (11, 15)]:
        assert torch.equal(out[0, :, r, c], z[0, :, r, c])
    # the splat leaves holes (fewer distinct destinations than pixels) and BNNI fills every one
    rows, cols = torch.meshgrid(torch.arange(12), torch.arange(16), indexing="ij")
    dest = torch.round(rows + m[..., 0]).long().clamp(0, 11) * 16 + torch.round(
        cols + m[..., 1]
    ).long().clamp(0, 15)
    assert dest.unique().numel() < 12 * 16
    assert int((out[0, 0] == 0).sum()) == 0


def test_displacement_field_is_s_at_the_handle_and_decays() -> None:
    """m(A) = s (k = 1 where the official code has 0/0); |m| falls along the ray from the handle."""
    a, s = torch.tensor([[6.0, 7.0]]), torch.tensor([[0.0, 2.0]])
    m = displacement_field(a, s, (16, 16))
    assert torch.allclose(m[6, 7], s[0].double())
    along = m[6, 7:, 1]
    assert bool((along[1:] < along[:-1]).all())
    # two handles: weights normalised, each handle pixel gets (almost) its own shift
    a2, s2 = torch.tensor([[4.0, 4.0], [11.0, 11.0]]), torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    m2 = displacement_field(a2, s2, (16, 16))
    assert torch.allclose(m2[4, 4], s2[0].double(), atol=1e-4)
    assert torch.allclose(m2[11, 11], s2[1].double(), atol=1e-4)


def test_bnni_raster_order_weights() -> None:
    """Row [1, _, _, 4] (no vertical neighbours): first hole (1/1 + 4/2) / 1.5 = 2, then (2/1 + 4/1) / 2 = 3."""
    out = torch.tensor([[[1.0, 0.0, 0.0, 4.0]]])
    filled = torch.tensor([[True, False, False, True]])
    _fill_holes(out, filled)
    assert out[0, 0].tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0], abs=1e-6)
    # a 3x3 centre hole: the mean of its four neighbours
    grid = torch.arange(9.0).reshape(1, 3, 3)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    _fill_holes(grid, mask)
    assert float(grid[0, 1, 1]) == pytest.approx((1 + 3 + 5 + 7) / 4, abs=1e-6)
