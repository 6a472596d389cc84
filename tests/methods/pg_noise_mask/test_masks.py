"""Beta cells and mask geometry (spec oracles 2, 3, 6): sampling without a graph, the clamp, the closed-form
log density, nearest upsampling, the blur against torchvision's, convex-combination bounds, one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Beta

from visionkit.errors import VisionkitError
from visionkit.methods.pg_noise_mask import (
    EPS,
    PGNoiseMaskError,
    apply_mask,
    beta_log_prob,
    cells_to_mask,
    gaussian_kernel1d,
    random_cells,
    sample_cells,
)

G, S, B = 8, 32, 4


pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def logits(
    seed: int = 0, batch: int = B, low: float = -2.0, high: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.empty(batch, G * G).uniform_(low, high, generator=gen)
    b = torch.empty(batch, G * G).uniform_(low, high, generator=gen)
    return a.requires_grad_(), b.requires_grad_()


def test_sample_cells_shape_range_and_no_graph():
    a, b = logits()
    m = sample_cells(a, b)
    assert m.shape == (B, G * G)
    assert not m.requires_grad and m.grad_fn is None  # sample(), not rsample()
    assert m.min() >= EPS and m.max() <= 1 - EPS
    prior = sample_cells(torch.rand(1, G * G), torch.rand(1, G * G))
    assert prior.shape == (1, G * G)


def test_sample_cells_with_generator_is_beta_sample():
    a, b = logits(1)
    torch.manual_seed(7)
    expected = Beta(a.detach().exp(), b.detach().exp()).sample().clamp(EPS, 1 - EPS)
    got = sample_cells(a, b, torch.Generator().manual_seed(7))
    assert torch.equal(got, expected)
    torch.manual_seed(7)
    assert torch.equal(sample_cells(a, b), expected)  # the global-RNG path is Beta.sample() itself


def test_sample_cells_clamps_extreme_samples():
    # alpha = beta = e^-6: torch's sampler returns values down to 1e-38 and up to 1 - 6e-8, whose log
    # densities are huge; the clamp keeps every cell in [1e-6, 1 - 1e-6]
    a = torch.full((64, G * G), -6.0)
    raw = Beta(a.exp(), a.exp()).sample()
    assert (raw < EPS).any() and (raw > 1 - EPS).any()
    m = sample_cells(a, a, torch.Generator().manual_seed(0))
    assert m.min() >= EPS and m.max() <= 1 - EPS
    assert torch.isfinite(beta_log_prob(m, a, a)).all()
    assert torch.isfinite(beta_log_prob(torch.tensor([0.0, 1.0]), torch.zeros(2), torch.ones(2))).all()


def test_beta_log_prob_closed_form():
    """Oracle 6: (a-1) log m + (b-1) log(1-m) - ln B(a, b), written out in float64, to 1e-5."""
    a, b = logits(2)
    m = sample_cells(a, b, torch.Generator().manual_seed(2))
    got = beta_log_prob(m, a, b)
    assert got.shape == (B, G * G)
    al, be, md = a.detach().double().exp(), b.detach().double().exp(), m.double()
    log_beta_fn = torch.lgamma(al) + torch.lgamma(be) - torch.lgamma(al + be)
    expected = (al - 1) * md.log() + (be - 1) * (1 - md).log() - log_beta_fn
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, Beta(a.exp(), b.exp()).log_prob(m), rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_random_cells_are_clamped_uniform():
    gen = torch.Generator().manual_seed(0)
    m = random_cells(256, G, gen)
    assert m.shape == (256, G * G) and m.dtype == torch.float32
    assert m.min() >= EPS and m.max() <= 1 - EPS
    # 16384 U(0,1) values: the mean's std is 0.0023, the bound is 4 of them
    assert abs(m.mean().item() - 0.5) < 0.01
    assert random_cells(2, G, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(PGNoiseMaskError, match="batch >= 1"):
        random_cells(0, G)


@pytest.mark.parametrize("size", [32, 28])  # integer ratio 4, non-integer ratio 3.5 (blocks of 3 and 4 px)
def test_nearest_upsampling_rule(size):
    """Oracle 3: with no blur, M(i, j) = m(floor(i G / S), floor(j G / S)), exactly."""
    m = random_cells(B, G, torch.Generator().manual_seed(3))
    mask = cells_to_mask(m, size, kernel_size=1, sigma=1.0)
    assert mask.shape == (B, 1, size, size)
    rows = torch.arange(size) * G // size
    expected = m.view(B, G, G)[:, rows][:, :, rows]
    assert torch.equal(mask[:, 0], expected)


def test_no_upsampling_when_grid_equals_image():
    m = random_cells(B, G, torch.Generator().manual_seed(4))
    assert torch.equal(cells_to_mask(m, G, 1, 1.0), m.view(B, 1, G, G))


@pytest.mark.parametrize(("kernel_size", "sigma"), [(3, 0.75), (7, 3.0), (13, 6.0)])
def test_blur_matches_torchvision_gaussian_blur(kernel_size, sigma):
    from torchvision.transforms.functional import gaussian_blur

    m = random_cells(B, G, torch.Generator().manual_seed(5))
    upsampled = cells_to_mask(m, S, 1, 1.0)
    expected = gaussian_blur(upsampled, [kernel_size, kernel_size], [sigma, sigma])
    torch.testing.assert_close(cells_to_mask(m, S, kernel_size, sigma), expected, rtol=0, atol=1e-6)


def test_gaussian_kernel1d():
    k = gaussian_kernel1d(13, 6.0)
    assert k.shape == (13,)
    torch.testing.assert_close(k.sum(), torch.tensor(1.0), rtol=0, atol=1e-6)
    assert torch.equal(k, k.flip(0)) and k.argmax() == 6
    assert k[0] / k[6] == pytest.approx(math.exp(-36 / 72), rel=1e-6)  # edge/centre = exp(-6^2 / (2 * 6^2))


def test_mask_is_a_convex_combination_of_cells():
    """Oracle 2: min(m_b) <= M_b <= max(m_b) (1e-6 for the kernel's rounding)."""
    a, b = logits(6)
    m = sample_cells(a, b, torch.Generator().manual_seed(6))
    mask = cells_to_mask(m, S, 3, 0.75)
    low, high = m.min(1).values.view(B, 1, 1, 1), m.max(1).values.view(B, 1, 1, 1)
    assert (mask >= low - 1e-6).all() and (mask <= high + 1e-6).all()


def test_constant_cells_give_a_constant_mask():
    c = 0.37
    mask = cells_to_mask(torch.full((B, G * G), c), S, 7, 3.0)
    torch.testing.assert_close(mask, torch.full_like(mask, c), rtol=0, atol=1e-6)
    x = torch.randn(B, 3, S, S, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(apply_mask(x, mask), c * x, rtol=1e-5, atol=1e-6)


def test_apply_mask_is_multiplicative_per_channel():
    """Oracle 2: sign(x~) = sign(x), |x~| <= |x|; the same mask multiplies every channel."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(B, 3, S, S, generator=gen)
    mask = cells_to_mask(random_cells(B, G, gen), S, 3, 0.75)
    masked = apply_mask(x, mask)
    assert masked.shape == x.shape
    assert torch.equal(torch.sign(masked), torch.sign(x))
    assert (masked.abs() <= x.abs()).all()
    for c in range(3):
        assert torch.equal(masked[:, c], x[:, c] * mask[:, 0])
    shared = apply_mask(x, mask[:1])  # one mask for the whole batch
    assert torch.equal(shared, x * mask[:1])


def test_geometry_errors_are_one_line():
    m = torch.full((B, G * G), 0.5)
    with pytest.raises(PGNoiseMaskError, match=r"^kernel_size must be a positive odd number, got 4$"):
        cells_to_mask(m, S, 4, 1.0)
    with pytest.raises(PGNoiseMaskError, match=r"^grid 8 is larger than the image size 6$"):
        cells_to_mask(m, 6, 3, 1.0)
    with pytest.raises(PGNoiseMaskError, match="positive square"):
        cells_to_mask(torch.full((B, 60), 0.5), S, 3, 1.0)
    with pytest.raises(PGNoiseMaskError, match="sigma must be positive"):
        cells_to_mask(m, S, 3, 0.0)
    with pytest.raises(PGNoiseMaskError, match="too large for the image size 8"):
        cells_to_mask(m, G, 17, 1.0)
    with pytest.raises(PGNoiseMaskError, match=r"mask \(B or 1, 1, S, S\)"):
        apply_mask(torch.zeros(B, 3, S, S), torch.zeros(B, 3, S, S))
    with pytest.raises(PGNoiseMaskError, match="mask batch 2"):
        apply_mask(torch.zeros(B, 3, S, S), torch.zeros(2, 1, S, S))
    err = PGNoiseMaskError("x")
    assert isinstance(err, ValueError) and isinstance(err, VisionkitError)
