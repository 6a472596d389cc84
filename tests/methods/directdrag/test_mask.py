"""The auto soft mask and the regulariser: spec §5 oracles 12 (shape, range, blob, horizontal segment
profile, exact zeros beyond int(4σ)//2, the orientation test behind the official transposition bug,
the latent nearest downsample) and 10 (regulariser identities and gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import error_of
from visionkit.methods.directdrag import (
    DirectDragError,
    ddim_step,
    latent_mask,
    make_scheduler,
    mask_regulariser,
    path_map,
    soft_mask,
)
from visionkit.methods.directdrag.mask import gaussian_blur_reflect101, gaussian_kernel

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

SIGMA = 4.0  # kernel size int(4σ) | 1 = 17, radius 8
R = 8


def horizontal(grid: tuple[int, int] = (48, 48)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A drag along row 24 from col 14 to col 34; returns (handles, targets, mask (Hs, Ws))."""
    h, t = torch.tensor([[24.0, 14.0]]), torch.tensor([[24.0, 34.0]])
    return h, t, soft_mask(h, t, grid, SIGMA)[0, 0]


def test_kernel_is_opencv_size_and_blur_matches_a_direct_reflect101_convolution() -> None:
    """Kernel size int(4σ)|1 (σ = 30 -> 121), sums to 1; blur = 2-D correlation on a numpy reflect-101 pad."""
    assert gaussian_kernel(30.0).numel() == 121 and gaussian_kernel(SIGMA).numel() == 17
    assert float(gaussian_kernel(30.0).sum()) == pytest.approx(1.0, abs=1e-12)
    img = torch.rand(13, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = gaussian_kernel(2.0)  # size 9, radius 4 < both sides: numpy's "reflect" is reflect-101
    padded = torch.from_numpy(np.pad(img.numpy(), 4, mode="reflect"))
    direct = F.conv2d(padded[None, None], torch.outer(g, g)[None, None])[0, 0]
    assert torch.allclose(gaussian_blur_reflect101(img, 2.0), direct, atol=1e-12)


def test_shape_range_and_max() -> None:
    h = torch.tensor([[5.0, 6.0], [30.0, 12.0]])
    t = torch.tensor([[20.0, 30.0], [31.0, 12.0]])
    m = soft_mask(h, t, (40, 36), SIGMA)
    assert m.shape == (1, 1, 40, 36) and m.dtype == torch.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    # max = peak / (peak + 1e-6) (the official float32 map of ones, not 255s): 1 - 1.1e-5 here, not 1 +- 1e-5
    peak = float(gaussian_blur_reflect101(path_map(h, t, (40, 36)), SIGMA).max())
    assert float(m.max()) == pytest.approx(peak / (peak + 1e-6), abs=1e-7)
    assert 0.9999 < float(m.max()) < 1.0
    # one global normalisation: the short pair's peak stays below the long pair's
    assert float(m[0, 0, 28:34, 9:16].max()) < 0.9


def test_handle_equal_target_is_one_normalised_gaussian_blob() -> None:
    h = torch.tensor([[20.0, 17.0]])
    m = soft_mask(h, h.clone(), (40, 40), SIGMA)[0, 0].double()
    assert divmod(int(m.argmax()), 40) == (20, 17)
    g = gaussian_kernel(SIGMA)
    blob = torch.zeros(40, 40, dtype=torch.float64)
    blob[20 - R : 21 + R, 17 - R : 18 + R] = torch.outer(g, g)
    assert torch.allclose(m, blob / (blob.max() + 1e-6), atol=1e-6)
    assert float(m.max()) > 0.999  # 1e-6 / g_c^2 = 1e-4 below 1 at σ = 4


def test_horizontal_segment_profile() -> None:
    _, _, m = horizontal()
    m = m.double()
    # symmetric about the segment's row
    for k in range(1, 20):
        assert torch.allclose(m[24 + k], m[24 - k], atol=1e-6)
    # in every path column the path row holds the column's maximum
    for c in range(14, 35):
        assert float(m[24, c]) >= float(m[:, c].max()) - 1e-7
    # strictly decreasing along the perpendicular through the midpoint up to the kernel radius, then 0
    perp = m[24:, 24]
    assert bool((perp[1 : R + 1] < perp[:R]).all())
    assert bool((perp[R + 1 :] == 0).all())
    # exactly 0 at Chebyshev distance > R from every path pixel
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    cheb = torch.maximum((rows - 24).abs(), torch.clamp(torch.maximum(14 - cols, cols - 34), min=0))
    assert bool((m[cheb > R] == 0).all())
    assert bool((m[cheb <= R] > 0).all())
    # endpoints are about half the midpoint (long segment)
    assert 0.4 < float(m[24, 14]) < 0.65 and float(m[24, 24]) == pytest.approx(1.0, abs=1e-5)


def _extent(m: torch.Tensor) -> tuple[int, int]:
    nz = (m > 0).nonzero()
    return int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1)


def test_orientation_horizontal_drag_gives_horizontal_mask() -> None:
    """The paper's mask of a horizontal drag is wide (cols) and short (rows); the official transposed
    quirk (``transposed=True``) gives the tall mask at (col, row), i.e. the transpose on a square grid."""
    h, t, m = horizontal()
    rows, cols = _extent(m)
    assert (rows, cols) == (2 * R + 1, 20 + 1 + 2 * R)
    quirk = soft_mask(h, t, (48, 48), SIGMA, transposed=True)[0, 0]
    assert _extent(quirk) == (cols, rows)
    assert torch.allclose(quirk, m.T, atol=1e-6)
    # off the diagonal the quirk lands elsewhere: a drag along row 10 puts the official mask on column 10
    h2, t2 = torch.tensor([[10.0, 20.0]]), torch.tensor([[10.0, 30.0]])
    assert float(soft_mask(h2, t2, (48, 48), SIGMA)[0, 0, 10, 25]) > 0.99
    assert float(soft_mask(h2, t2, (48, 48), SIGMA, transposed=True)[0, 0, 10, 25]) == 0.0


def test_path_is_rasterised_with_max_axis_samples() -> None:
    """N = max(|Δrow|, |Δcol|) + 1 rounded samples; out-of-grid samples are dropped."""
    m = path_map(torch.tensor([[2.0, 1.0]]), torch.tensor([[5.0, 9.0]]), (8, 12))
    assert int(m.sum()) == 9
    assert m[2, 1] == 1 and m[5, 9] == 1
    out = path_map(torch.tensor([[1.0, 10.0]]), torch.tensor([[1.0, 14.0]]), (8, 12))
    assert int(out.sum()) == 2  # cols 10, 11 inside; 12..14 outside


def test_latent_mask_is_nearest_downsample() -> None:
    h, t, _ = horizontal()
    m = soft_mask(h, t, (48, 48), SIGMA)
    lat = latent_mask(m, (12, 12))
    assert lat.shape == (1, 1, 12, 12)
    assert torch.equal(lat, m[:, :, ::4, ::4])


def test_bad_mask_inputs_are_one_line_errors() -> None:
    with pytest.raises(DirectDragError) as info:
        soft_mask(torch.zeros(2, 2), torch.zeros(1, 2), (8, 8), SIGMA)
    assert "(K, 2)" in error_of(info)
    with pytest.raises(DirectDragError):
        soft_mask(torch.zeros(1, 2), torch.zeros(1, 2), (8, 8), 0.0)


# oracle 10 ------------------------------------------------------------------------------------------


def test_regulariser_identities_and_gradient() -> None:
    sched = make_scheduler(10)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 12, 12, generator=g).requires_grad_(True)
    eps = torch.randn(1, 4, 12, 12, generator=g)
    ref = torch.randn(1, 4, 12, 12, generator=g)
    h, t, _ = horizontal()
    m_lat = latent_mask(soft_mask(h, t, (48, 48), SIGMA), (12, 12))
    z_prev = ddim_step(sched, eps, 601, z)
    loss = mask_regulariser(z_prev, ref, m_lat, 0.1)
    explicit = 0.1 * ((1 - m_lat) * (z_prev - ref).abs()).sum()
    assert (
        float(loss.detach()) == pytest.approx(float(explicit.detach()), rel=1e-6) and float(loss.detach()) > 0
    )
    assert float(mask_regulariser(z_prev, z_prev.detach(), m_lat, 0.1).detach()) == 0.0
    assert float(mask_regulariser(z_prev, ref, m_lat, 0.3).detach()) == pytest.approx(
        3 * float(loss.detach()), rel=1e-6
    )
    # zero everywhere M = 1: changing ẑ_prev only where M = 1 leaves the loss unchanged
    bumped = z_prev.detach() + 5.0 * (m_lat == 1).float()
    assert float(mask_regulariser(bumped, ref, m_lat, 0.1)) == pytest.approx(float(loss.detach()), rel=1e-6)
    # gradient w.r.t. z: non-zero with the soft mask, exactly zero with M ≡ 1 (the "no mask" ablation)
    (grad,) = torch.autograd.grad(loss, z)
    assert float(grad.abs().sum()) > 0
    ones = torch.ones_like(m_lat)
    (grad_ones,) = torch.autograd.grad(mask_regulariser(ddim_step(sched, eps, 601, z), ref, ones, 0.1), z)
    assert float(grad_ones.abs().sum()) == 0.0
