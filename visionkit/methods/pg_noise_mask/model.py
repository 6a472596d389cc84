"""Policy-gradient noise mask (Yavuz & Yang, 2024) in pure torch: :class:`NoiseMasker` glues the policy,
the Beta cells, the mask geometry and the losses (equations, defaults and the differences from the
official code: this folder's ``README.md``).

One training step (official ``train_one_epoch``)::

    masked, mask, log_probs, stats = masker.draw(x)         # x: clean, normalised (B, C, S, S)
    ce = cross_entropy(classifier(masked), y)               # batch mean
    loss, ce_scale = masker.loss(ce, log_probs, per_sample_cost=ce_per_image)
    loss.backward()                                         # one backward, both networks step

Validation draws one mask from the prior (no policy call), shared by the whole batch:
``masker.draw_prior(x)``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from visionkit.errors import check_choice
from visionkit.methods.pg_noise_mask.losses import faithful_loss, random_ce_scale, reinforce_loss
from visionkit.methods.pg_noise_mask.masks import (
    PGNoiseMaskError,
    apply_mask,
    beta_log_prob,
    cells_to_mask,
    random_cells,
    sample_cells,
)
from visionkit.methods.pg_noise_mask.policy import NoisePolicy

Estimator = Literal["faithful", "reinforce", "random"]
ESTIMATORS: tuple[str, ...] = ("faithful", "reinforce", "random")


class MaskDraw(NamedTuple):
    """One draw of :class:`NoiseMasker` (unpacks as ``masked, mask, log_probs, stats``).

    Attributes:
        masked: ``x * mask``, the shape of ``x``.
        mask: ``(B, 1, S, S)`` (``(1, 1, S, S)`` from the prior).
        log_probs: ``(B, G^2)`` per-cell Beta log densities (policy draws), else ``None``.
        stats: detached scalars ``alpha`` (mean concentration), ``beta``, ``expected_m``
            (mean ``alpha / (alpha + beta)``), ``mask_mean`` and ``mask_std`` (spatial std per
            image, population, averaged over images).
    """

    masked: Tensor
    mask: Tensor
    log_probs: Tensor | None
    stats: dict[str, Tensor]


def mask_stats(alpha_logits: Tensor, beta_logits: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Detached logging scalars of a draw (see :class:`MaskDraw`); ``E[m] = sigmoid(l_alpha - l_beta)``."""
    with torch.no_grad():
        return {
            "alpha": alpha_logits.exp().mean(),
            "beta": beta_logits.exp().mean(),
            "expected_m": torch.sigmoid(alpha_logits - beta_logits).mean(),
            "mask_mean": mask.mean(),
            "mask_std": mask.flatten(1).std(dim=1, correction=0).mean(),
        }


class NoiseMasker(nn.Module):
    """The noise mask of one training arm: policy (or random cells) + mask geometry + joint loss.

    Args:
        grid: ``G``, cells per side (official 64).
        image_size: ``S``, the side of the (square) images.
        kernel_size: odd Gaussian blur width (official 13 at S=224).
        sigma: Gaussian blur sigma (official 6).
        estimator: ``"faithful"`` (default: official policy and loss, :func:`faithful_loss`),
            ``"reinforce"`` (same policy, :func:`reinforce_loss`) or ``"random"`` (the control arm:
            ``Beta(1, 1)`` cells, no policy, CE scaled by ``log(G^2)``).
        trunk, in_chans, pretrained, mix, momentum: of the :class:`NoisePolicy` (unused for ``"random"``).

    Raises:
        PGNoiseMaskError: an unknown estimator, a grid larger than the image, an even kernel.
    """

    def __init__(
        self,
        grid: int = 64,
        image_size: int = 224,
        kernel_size: int = 13,
        sigma: float = 6.0,
        estimator: Estimator = "faithful",
        trunk: str | nn.Module = "resnet10t",
        in_chans: int = 3,
        pretrained: bool = False,
        mix: float = 0.9,
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        check_choice("estimator", estimator, ESTIMATORS, PGNoiseMaskError)
        self.grid, self.image_size, self.kernel_size, self.sigma = grid, image_size, kernel_size, float(sigma)
        self.estimator = estimator
        # check the geometry now (grid vs image, odd kernel) rather than at the first draw
        cells_to_mask(torch.full((1, grid * grid), 0.5), image_size, kernel_size, self.sigma)
        self.policy = (
            None
            if estimator == "random"
            else NoisePolicy(
                grid, trunk, in_chans=in_chans, pretrained=pretrained, mix=mix, momentum=momentum
            )
        )

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid}, image_size={self.image_size}, kernel_size={self.kernel_size}, "
            f"sigma={self.sigma}, estimator={self.estimator!r}"
        )

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[-2:] != (self.image_size, self.image_size):
            raise PGNoiseMaskError(
                f"images must be (B, C, {self.image_size}, {self.image_size}), got {tuple(x.shape)}"
            )

    def _finish(
        self, x: Tensor, m: Tensor, alpha_logits: Tensor, beta_logits: Tensor, log_probs: Tensor | None
    ) -> MaskDraw:
        mask = cells_to_mask(m.to(x.dtype), self.image_size, self.kernel_size, self.sigma)
        return MaskDraw(apply_mask(x, mask), mask, log_probs, mask_stats(alpha_logits, beta_logits, mask))

    def draw(self, x: Tensor, generator: torch.Generator | None = None) -> MaskDraw:
        """One mask per image for a training step; the policy (in its current mode) sees the clean ``x``.

        Policy estimators return the per-cell ``log_probs`` ``(B, G^2)`` (with graph into the policy);
        ``"random"`` returns ``None`` there.
        """
        self._check_input(x)
        if self.policy is None:
            m = random_cells(x.shape[0], self.grid, generator, device=x.device, dtype=x.dtype)
            zeros = torch.zeros_like(m)
            return self._finish(x, m, zeros, zeros, None)
        alpha_logits, beta_logits = self.policy(x)
        m = sample_cells(alpha_logits, beta_logits, generator)
        return self._finish(x, m, alpha_logits, beta_logits, beta_log_prob(m, alpha_logits, beta_logits))

    def draw_prior(self, x: Tensor, generator: torch.Generator | None = None) -> MaskDraw:
        """One mask ``(1, 1, S, S)`` from the prior ``Beta(exp(base_alpha), exp(base_beta))`` shared by the
        whole batch (official evaluation): the policy network is not called and the prior is unchanged.
        ``"random"`` draws ``Beta(1, 1)`` cells. ``log_probs`` is ``None``."""
        self._check_input(x)
        if self.policy is None:
            m = random_cells(1, self.grid, generator, device=x.device, dtype=x.dtype)
            zeros = torch.zeros_like(m)
            return self._finish(x, m, zeros, zeros, None)
        alpha_logits, beta_logits = self.policy.prior()
        return self._finish(
            x, sample_cells(alpha_logits, beta_logits, generator), alpha_logits, beta_logits, None
        )

    def loss(
        self, ce_mean: Tensor, log_probs: Tensor | None = None, per_sample_cost: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The arm's joint loss and its classifier-gradient scale ``(loss, ce_scale)`` (scale detached).

        ``"faithful"``: :func:`faithful_loss`, scale ``mean_b LSE_j logp``; ``"reinforce"``:
        :func:`reinforce_loss` with ``per_sample_cost`` ``(B,)``, scale 1; ``"random"``:
        ``log(G^2) * ce_mean``, scale ``log(G^2)``.
        """
        if self.estimator == "random":
            scale = random_ce_scale(self.grid)
            return scale * ce_mean, torch.tensor(scale, dtype=ce_mean.dtype, device=ce_mean.device)
        if log_probs is None:
            raise PGNoiseMaskError(f"the {self.estimator} estimator needs the draw's log_probs")
        if self.estimator == "faithful":
            return faithful_loss(log_probs, ce_mean)
        if per_sample_cost is None:
            raise PGNoiseMaskError(
                "the reinforce estimator needs per_sample_cost (B,), e.g. the per-image CE"
            )
        one = torch.ones((), dtype=ce_mean.dtype, device=ce_mean.device)
        return reinforce_loss(log_probs, per_sample_cost, ce_mean), one
