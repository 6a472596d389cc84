"""The joint losses (spec oracles 4, 5c, 9): the faithful surrogate's value and gradients, its attractor at
Beta(1, 1) under a constant cost, the corrected estimator's exactly-zero gradient under a constant cost and
its response to a mask-dependent cost, the random control's CE scale."""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.methods.pg_noise_mask import (
    PGNoiseMaskError,
    beta_log_prob,
    faithful_loss,
    random_ce_scale,
    random_cells,
    reinforce_loss,
    sample_cells,
)

G, B = 8, 4


pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def log_probs(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, G * G, generator=torch.Generator().manual_seed(seed)).mul(3).requires_grad_()


def test_faithful_loss_value_and_policy_gradient():
    """``mean_b(LSE_j logp) * CE``; oracle 5c: dL/dlogp_bj = CE * softmax_j(logp_b) / B."""
    lp = log_probs()
    ce = torch.tensor(1.7, requires_grad=True)
    loss, mean_lse = faithful_loss(lp, ce)
    expected_lse = torch.log(torch.exp(lp.detach().double()).sum(1)).mean()  # official log(sum(exp))
    torch.testing.assert_close(mean_lse.double(), expected_lse, rtol=1e-6, atol=0)
    assert not mean_lse.requires_grad and loss.shape == ()
    loss.backward()
    torch.testing.assert_close(lp.grad, 1.7 * torch.softmax(lp.detach(), 1) / B, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(ce.grad, mean_lse, rtol=1e-6, atol=0)  # the classifier's CE scale


def test_faithful_loss_at_the_uniform_beta():
    """Oracle 4 at the loss: every logp = 0 gives L_b = log(G^2) and a uniform weight 1/G^2 per cell."""
    lp = torch.zeros(B, G * G, requires_grad=True)
    loss, mean_lse = faithful_loss(lp, torch.tensor(2.0))
    assert mean_lse.item() == pytest.approx(math.log(G * G), rel=1e-6)
    assert loss.item() == pytest.approx(2.0 * math.log(G * G), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.full_like(lp, 2.0 / (B * G * G)), rtol=1e-6, atol=0)


def test_faithful_loss_does_not_overflow():
    lp = torch.full((B, G * G), 200.0)  # exp(200) is inf in float32; logsumexp is not
    _, mean_lse = faithful_loss(lp, torch.tensor(1.0))
    assert mean_lse.item() == pytest.approx(200.0 + math.log(G * G), rel=1e-6)


def test_reinforce_loss_gradients():
    """dL/dlogp_bj = (c_b - mean(c)) / B (joint log-likelihood, per-sample cost, mean baseline); dL/dCE = 1."""
    lp = log_probs(1)
    cost = torch.tensor([0.5, 1.0, 2.0, 4.5], requires_grad=True)
    ce = torch.tensor(1.3, requires_grad=True)
    reinforce_loss(lp, cost, ce).backward()
    advantage = (cost.detach() - cost.detach().mean()) / B
    torch.testing.assert_close(lp.grad, advantage[:, None].expand(B, G * G), rtol=1e-6, atol=0)
    assert ce.grad.item() == 1.0
    assert cost.grad is None  # the cost is detached


def test_reinforce_constant_cost_gives_exactly_zero_policy_gradient():
    a = torch.full((B, G * G), 1.0, requires_grad=True)
    b = torch.full((B, G * G), -1.0, requires_grad=True)
    m = sample_cells(a, b, torch.Generator().manual_seed(0))
    ce = torch.tensor(2.3, requires_grad=True)
    loss = reinforce_loss(beta_log_prob(m, a, b), torch.ones(B), ce)
    loss.backward()
    assert torch.count_nonzero(a.grad) == 0 and torch.count_nonzero(b.grad) == 0
    assert ce.grad.item() == 1.0
    assert loss.item() == pytest.approx(2.3, rel=1e-6)


def test_loss_shape_errors():
    with pytest.raises(PGNoiseMaskError, match=r"per_sample_cost must have shape \(4,\), got \(4, 1\)"):
        reinforce_loss(log_probs(), torch.ones(B, 1), torch.tensor(1.0))
    with pytest.raises(PGNoiseMaskError, match=r"log_probs must have shape \(B, G\*G\)"):
        faithful_loss(torch.zeros(G * G), torch.tensor(1.0))


def test_random_ce_scale_is_the_mean_lse_of_beta_one_one():
    m = random_cells(B, G, torch.Generator().manual_seed(0))
    zeros = torch.zeros_like(m)  # logits 0: alpha = beta = 1
    lp = beta_log_prob(m, zeros, zeros)
    torch.testing.assert_close(lp, zeros, rtol=0, atol=1e-6)
    _, mean_lse = faithful_loss(lp, torch.tensor(1.0))
    assert random_ce_scale(G) == math.log(G * G)
    assert mean_lse.item() == pytest.approx(random_ce_scale(G), rel=1e-6)


# ---- oracle 9: per-cell free logits, SGD lr 0.1 momentum 0.9, batch 32, 64 cells ----------------------
def simulate(
    estimator: str, start: tuple[float, float], steps: int, seed: int = 0
) -> tuple[float, float, float]:
    """Train per-cell free logits (1, 64) with the library's sampler, log density and loss.

    ``"faithful"`` uses the constant cost ``CE = 1``; ``"faithful_cost"`` and ``"reinforce"`` the
    mask-dependent per-image cost ``1 + mean(1 - m)``. SGD with momentum written out (the update of
    ``torch.optim.SGD``, ``buf = 0.9 buf + g; p -= 0.1 buf``, without its per-step overhead). Returns
    mean alpha, mean beta, mean E[m].
    """
    batch, cells = 32, 64
    gen = torch.Generator().manual_seed(seed)
    a = torch.full((1, cells), start[0], requires_grad=True)
    b = torch.full((1, cells), start[1], requires_grad=True)
    bufs = (torch.zeros_like(a), torch.zeros_like(b))
    for _ in range(steps):
        m = sample_cells(a.expand(batch, cells), b.expand(batch, cells), gen)
        lp = beta_log_prob(m, a, b)
        cost = 1.0 + (1.0 - m).mean(1)
        if estimator == "faithful":
            loss, _ = faithful_loss(lp, torch.tensor(1.0))
        elif estimator == "faithful_cost":
            loss, _ = faithful_loss(lp, cost.mean())
        else:
            loss = reinforce_loss(lp, cost, cost.mean())
        grads = torch.autograd.grad(loss, (a, b))
        with torch.no_grad():
            for param, buf, grad in zip((a, b), bufs, grads, strict=True):
                buf.mul_(0.9).add_(grad)
                param.sub_(0.1 * buf)
    with torch.no_grad():
        return a.exp().mean().item(), b.exp().mean().item(), torch.sigmoid(a - b).mean().item()


def test_faithful_surrogate_drifts_to_beta_one_one_under_a_constant_cost():
    """From (alpha, beta) = (e, 1/e), 1000 steps: both within 0.1 of 1 (seeds 0-2 give 1.002-1.008)."""
    alpha, beta, _ = simulate("faithful", (1.0, -1.0), steps=1000)
    assert abs(alpha - 1.0) < 0.1 and abs(beta - 1.0) < 0.1


def test_corrected_estimator_follows_a_mask_dependent_cost():
    """Cost 1 + mean(1 - m) from alpha = beta = 1: 150 steps take E[m] above 0.55 (seeds 0-2: ~0.73)."""
    _, _, expected_m = simulate("reinforce", (0.0, 0.0), steps=150)
    assert expected_m > 0.55


def test_faithful_surrogate_ignores_a_weak_mask_dependent_cost():
    """The same cost and steps under the official surrogate leave E[m] at 0.5 (seeds 0-2: within 0.01)."""
    _, _, expected_m = simulate("faithful_cost", (0.0, 0.0), steps=150)
    assert abs(expected_m - 0.5) < 0.05
