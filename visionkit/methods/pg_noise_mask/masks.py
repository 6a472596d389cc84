"""Beta cells and mask geometry of the policy-gradient noise mask (pure torch).

A mask is drawn as one value per cell of a ``G x G`` grid, ``m`` ``(B, G^2)`` in ``(0, 1)``, then
turned into a per-pixel mask ``M`` ``(B, 1, S, S)`` by nearest upsampling and a normalised Gaussian
blur, and multiplies the already-normalised image: ``x~ = x * M``.

* :func:`sample_cells` draws ``m ~ Beta(exp(l_alpha), exp(l_beta))`` with ``sample()``: no pathwise
  gradient, the policy learns only through :func:`beta_log_prob` (score function).
* :func:`random_cells` draws the random-mask control's ``Beta(1, 1) = U(0, 1)`` cells.
* :func:`cells_to_mask` and :func:`apply_mask` are the geometry; both are convex combinations of
  the cells, so ``min(m_b) <= M_b <= max(m_b)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Beta

from visionkit.errors import VisionkitError

#: Cells are clamped to ``[EPS, 1 - EPS]`` before any log density: with small concentrations torch's
#: float32 sampler returns cells down to 1e-38 and up to 1 - 6e-8 (huge log densities), and a cell of
#: exactly 0 or 1 has a log density of +-inf, then a NaN loss (the official code does not clamp).
EPS = 1e-6


class PGNoiseMaskError(VisionkitError, ValueError):
    """A mask geometry or policy setting the noise mask cannot work with (one line, naming it)."""


def grid_side(cells: int) -> int:
    """``G`` for ``cells = G^2`` cells; :class:`PGNoiseMaskError` if ``cells`` is not a square."""
    side = math.isqrt(cells) if cells > 0 else 0
    if side < 1 or side * side != cells:
        raise PGNoiseMaskError(f"the number of cells must be a positive square G*G, got {cells}")
    return side


def _clamp(m: Tensor) -> Tensor:
    return m.clamp(EPS, 1.0 - EPS)


def sample_cells(
    alpha_logits: Tensor, beta_logits: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Cells ``m`` ``(B, G^2)`` ~ ``Beta(exp(alpha_logits), exp(beta_logits))``, clamped to ``[1e-6, 1 - 1e-6]``.

    ``Beta(...).sample()`` (not ``rsample``): ``m`` carries no graph. The logits broadcast against
    each other (``(1, G^2)`` prior logits give a ``(1, G^2)`` draw). With ``generator`` (on the
    logits' device) the draw is the one ``Beta.sample()`` makes from that generator's state (the
    same ``_sample_dirichlet`` call, given the generator).
    """
    alpha, beta = torch.exp(alpha_logits.detach()), torch.exp(beta_logits.detach())
    if generator is None:
        m = Beta(alpha, beta, validate_args=False).sample()
    else:
        alpha, beta = torch.broadcast_tensors(alpha, beta)
        with torch.no_grad():
            m = torch._sample_dirichlet(torch.stack([alpha, beta], -1), generator=generator)[..., 0]
    return _clamp(m)


def beta_log_prob(m: Tensor, alpha_logits: Tensor, beta_logits: Tensor) -> Tensor:
    """Per-cell log density ``log Beta(m; exp(alpha_logits), exp(beta_logits))`` ``(B, G^2)``.

    The closed form ``(a - 1) log m + (b - 1) log(1 - m) - (lgamma a + lgamma b - lgamma(a + b))``
    (what ``Beta(a, b).log_prob`` computes, with fewer kernels), differentiable in the logits. ``m``
    is clamped to ``[1e-6, 1 - 1e-6]`` again (a no-op for :func:`sample_cells` output).
    """
    alpha, beta = torch.exp(alpha_logits), torch.exp(beta_logits)
    m = _clamp(m)
    log_norm = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
    return (alpha - 1.0) * torch.log(m) + (beta - 1.0) * torch.log1p(-m) - log_norm


def random_cells(
    batch: int,
    grid: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The random-mask control's cells ``(batch, grid^2)``: ``Beta(1, 1) = U(0, 1)``, clamped like
    :func:`sample_cells`.

    ``device`` defaults to the generator's device (CPU without one).
    """
    if batch < 1 or grid < 1:
        raise PGNoiseMaskError(f"random_cells needs batch >= 1 and grid >= 1, got batch={batch}, grid={grid}")
    if device is None and generator is not None:
        device = generator.device
    return _clamp(torch.rand(batch, grid * grid, generator=generator, device=device, dtype=dtype))


def gaussian_kernel1d(
    kernel_size: int,
    sigma: float,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Normalised 1-D Gaussian ``(kernel_size,)`` on the taps ``-k//2 .. k//2``: ``w_i ~ exp(-i^2 / (2 sigma^2))``."""
    _check_blur(kernel_size, sigma)
    taps = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    return (weights / weights.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def _check_blur(kernel_size: int, sigma: float) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise PGNoiseMaskError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if not sigma > 0:
        raise PGNoiseMaskError(f"sigma must be positive, got {sigma}")


def cells_to_mask(m: Tensor, image_size: int, kernel_size: int, sigma: float) -> Tensor:
    """Per-pixel mask ``(B, 1, S, S)`` from cells ``m`` ``(B, G^2)`` (``S = image_size``).

    1. reshape to ``(B, 1, G, G)``;
    2. if ``G != S``, ``F.interpolate`` to ``(S, S)`` with the default mode, nearest: pixel ``(i, j)``
       takes cell ``(floor(i G / S), floor(j G / S))`` (blocks of 3 and 4 px at 224 / 64). The
       official code tests ``G != 224`` with a literal 224; this compares ``G`` with ``S``;
    3. separable normalised Gaussian blur (:func:`gaussian_kernel1d`, odd ``kernel_size``) with
       reflect padding, the same as torchvision's ``gaussian_blur``. ``kernel_size=1`` is no blur.

    Raises:
        PGNoiseMaskError: ``m`` not ``(B, G^2)``, a grid larger than the image, an even kernel, or a
            kernel whose half-width reaches the image size (reflect padding needs ``k // 2 < S``).
    """
    if m.ndim != 2:
        raise PGNoiseMaskError(f"cells must have shape (B, G*G), got {tuple(m.shape)}")
    grid = grid_side(m.shape[1])
    if grid > image_size:
        raise PGNoiseMaskError(f"grid {grid} is larger than the image size {image_size}")
    _check_blur(kernel_size, sigma)
    if kernel_size // 2 >= image_size:
        raise PGNoiseMaskError(
            f"kernel_size {kernel_size} is too large for the image size {image_size} (needs k // 2 < S)"
        )
    mask = m.reshape(m.shape[0], 1, grid, grid)
    if grid != image_size:
        mask = F.interpolate(mask, size=(image_size, image_size))
    if kernel_size == 1:
        return mask
    kernel = gaussian_kernel1d(kernel_size, sigma, dtype=mask.dtype, device=mask.device)
    pad = kernel_size // 2
    mask = F.pad(mask, (pad, pad, pad, pad), mode="reflect")
    mask = F.conv2d(mask, kernel.view(1, 1, 1, -1))
    return F.conv2d(mask, kernel.view(1, 1, -1, 1))


def apply_mask(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask``: ``x`` ``(B, C, S, S)`` is the already-normalised image, ``mask`` ``(B or 1, 1, S, S)``
    is broadcast over the channels (and over the batch when it has one image)."""
    if x.ndim != 4 or mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
        raise PGNoiseMaskError(
            f"apply_mask needs x (B, C, S, S) and mask (B or 1, 1, S, S), got {tuple(x.shape)} and {tuple(mask.shape)}"
        )
    if mask.shape[0] not in (1, x.shape[0]):
        raise PGNoiseMaskError(f"mask batch {mask.shape[0]} must be 1 or the image batch {x.shape[0]}")
    return x * mask
