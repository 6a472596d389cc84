"""The joint losses of the policy-gradient noise mask: the official surrogate and a corrected REINFORCE.

``log_probs`` ``(B, G^2)`` are the per-cell Beta log densities of the sampled cells
(:func:`~visionkit.methods.pg_noise_mask.masks.beta_log_prob`, differentiable in the policy);
``ce_mean`` is the classifier's batch-mean cross-entropy on the masked images (differentiable in
the classifier). Each function returns one loss for one ``backward()`` that trains both networks.

* :func:`faithful_loss` (**the default**, the official code): ``mean_b(LSE_j logp_bj) * CE``.
* :func:`reinforce_loss` (the corrected estimator): ``CE + mean_b(A_b * sum_j logp_bj)``.
* :func:`random_ce_scale`: the random-mask control's CE scale, ``log(G^2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visionkit.methods.pg_noise_mask.masks import PGNoiseMaskError


def _check_log_probs(log_probs: Tensor) -> None:
    if log_probs.ndim != 2:
        raise PGNoiseMaskError(f"log_probs must have shape (B, G*G), got {tuple(log_probs.shape)}")


def faithful_loss(log_probs: Tensor, ce_mean: Tensor) -> tuple[Tensor, Tensor]:
    """The official joint loss ``mean_b(L_b) * CE``, ``L_b = logsumexp_j logp_bj``; returns ``(loss, mean L_b)``.

    Gradients: the classifier gets ``mean_b(L_b) * dCE`` (plain CE scaled by ~``log(G^2)``: 4.3 at
    G=8, 8.5 at G=64); the policy gets ``CE * mean_b sum_j softmax_j(logp_b) dlogp_bj``, a REINFORCE
    with the batch-mean CE as everyone's cost, no baseline and a log-sum-exp in place of the joint
    log-likelihood. Even with a cost independent of the mask, this drifts the cells to ``Beta(1, 1)``.
    ``logsumexp`` is the official ``log(sum(exp(.)))`` without its overflow above e^88.

    Args:
        log_probs: ``(B, G^2)`` per-cell log densities.
        ce_mean: scalar batch-mean cross-entropy.

    Returns:
        ``loss`` (scalar) and the detached mean log-sum-exp ``mean_b(L_b)`` (the CE scale, to log).
    """
    _check_log_probs(log_probs)
    mean_lse = torch.logsumexp(log_probs, dim=1).mean()
    return mean_lse * ce_mean, mean_lse.detach()


def reinforce_loss(log_probs: Tensor, per_sample_cost: Tensor, ce_mean: Tensor) -> Tensor:
    """Corrected estimator ``CE + mean_b((c_b - mean(c)).detach() * sum_j logp_bj)`` (scalar).

    The classifier term ``ce_mean`` is left undetached, so the classifier trains on plain CE (no
    ``log(G^2)`` scale: its effective learning rate is ~``log(G^2)`` times lower than under
    :func:`faithful_loss`). The policy term is textbook REINFORCE: the joint log-likelihood of the
    ``G^2`` independent cells, each image's own cost ``c_b`` (e.g. its CE, detached) and the batch
    mean as the baseline. A constant cost gives an advantage of exactly zero, hence exactly zero
    policy gradient; a batch of one image has no policy gradient either.

    Args:
        log_probs: ``(B, G^2)`` per-cell log densities.
        per_sample_cost: ``(B,)`` cost of each image (lower is better), detached here.
        ce_mean: scalar batch-mean cross-entropy (the classifier's loss).
    """
    _check_log_probs(log_probs)
    if per_sample_cost.shape != log_probs.shape[:1]:
        raise PGNoiseMaskError(
            f"per_sample_cost must have shape ({log_probs.shape[0]},), got {tuple(per_sample_cost.shape)}"
        )
    cost = per_sample_cost.detach()
    advantage = cost - cost.mean()
    return ce_mean + (advantage * log_probs.sum(dim=1)).mean()


def random_ce_scale(grid: int) -> float:
    """The random-mask control's CE scale ``log(G^2)``: its own mean log-sum-exp of the ``Beta(1, 1)`` log
    density, which is 0 in every cell, so ``logsumexp`` over ``G^2`` cells is ``log(G^2)`` exactly."""
    if grid < 1:
        raise PGNoiseMaskError(f"grid must be >= 1, got {grid}")
    return math.log(grid * grid)
