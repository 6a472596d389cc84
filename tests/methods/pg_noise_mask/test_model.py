"""NoisePolicy and NoiseMasker on a tiny timm trunk (G=8, S=32, batch 4): shapes and buffers (oracle 1),
the uniform-Beta loss identity (4), gradient routing (5), mixing and EMA and the prior-only evaluation (7),
the random control arm, determinism with a seeded generator (12)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionkit.methods.pg_noise_mask import (
    MaskDraw,
    NoiseMasker,
    NoisePolicy,
    PGNoiseMaskError,
    beta_log_prob,
    cells_to_mask,
    sample_cells,
)

G, S, B, K, SIGMA = 8, 32, 4, 3, 0.75
TRUNK = "test_resnet"  # timm, 96 pooled features


pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def make_masker(estimator: str = "faithful", seed: int = 0) -> NoiseMasker:
    torch.manual_seed(seed)
    return NoiseMasker(grid=G, image_size=S, kernel_size=K, sigma=SIGMA, estimator=estimator, trunk=TRUNK)


def images(seed: int = 0, batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, S, S, generator=gen), torch.randint(0, 5, (batch,), generator=gen)


def classifier(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    )


def test_policy_structure_and_buffers():
    """Oracle 1: heads Linear-BN-ReLU-Linear-BN-ReLU-Linear(F, G^2); buffers (1, G^2) in [0, 1), no grad, saved."""
    policy = make_masker().policy
    feats = policy.trunk.num_features
    for head in (policy.alpha_head, policy.beta_head):
        kinds = [type(layer) for layer in head]
        assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
        assert (head[0].in_features, head[3].out_features, head[6].out_features) == (feats, feats, G * G)
    state = policy.state_dict()
    for name in ("base_alpha", "base_beta"):
        buf = getattr(policy, name)
        assert buf.shape == (1, G * G) and not buf.requires_grad and name in state
        assert buf.min() >= 0 and buf.max() < 1
    assert not torch.equal(policy.base_alpha, policy.base_beta)
    policy.double()  # buffers follow the module (the official plain tensors stayed on the CPU)
    assert policy.base_alpha.dtype == torch.float64


def test_default_trunk_is_resnet10t():
    policy = NoisePolicy(grid=G)
    assert policy.trunk.num_features == 512 and policy.alpha_head[6].out_features == G * G
    assert (policy.mix, policy.momentum) == (0.9, 0.99)


def test_draw_shapes():
    """Oracle 1: logits, log_probs (B, G^2); mask (B, 1, S, S); masked like x, the mask shared by the channels."""
    masker = make_masker()
    x, _ = images()
    alpha_logits, beta_logits = masker.policy(x)
    assert alpha_logits.shape == beta_logits.shape == (B, G * G)
    out = masker.draw(x)
    assert isinstance(out, MaskDraw)
    assert (
        out.masked.shape == x.shape and out.mask.shape == (B, 1, S, S) and out.log_probs.shape == (B, G * G)
    )
    assert out.log_probs.requires_grad and not out.mask.requires_grad
    for c in range(3):
        assert torch.equal(out.masked[:, c], x[:, c] * out.mask[:, 0])


def test_mixing_and_ema_update():
    """Oracle 7: l = 0.9 * buffer_old + 0.1 * u; buffer_new = 0.99 * buffer_old + 0.01 * mean_b(u); heads run once."""
    policy = make_masker().policy.train()
    x, _ = images()
    old_a, old_b = policy.base_alpha.clone(), policy.base_beta.clone()
    u_a, u_b = copy.deepcopy(policy).head_outputs(x)  # same train-mode BatchNorm numbers
    alpha_logits, beta_logits = policy(x)
    tol = {"rtol": 1e-6, "atol": 1e-7}
    torch.testing.assert_close(alpha_logits, 0.9 * old_a + 0.1 * u_a, **tol)
    torch.testing.assert_close(beta_logits, 0.9 * old_b + 0.1 * u_b, **tol)
    torch.testing.assert_close(policy.base_alpha, 0.99 * old_a + 0.01 * u_a.mean(0, keepdim=True), **tol)
    torch.testing.assert_close(policy.base_beta, 0.99 * old_b + 0.01 * u_b.mean(0, keepdim=True), **tol)
    assert policy.alpha_head[1].num_batches_tracked.item() == 1  # the official runs each head twice


def test_eval_forward_and_prior_draw_leave_the_prior_and_skip_the_policy():
    """Oracle 7: eval-mode forward keeps the buffers; draw_prior calls no policy module and shares one mask."""
    masker = make_masker()
    x, _ = images()
    before = {k: v.clone() for k, v in masker.policy.named_buffers() if k.startswith("base_")}
    masker.eval()
    masker.policy(x)
    calls = []
    handle = masker.policy.register_forward_pre_hook(lambda *_: calls.append(1))
    masker.train()
    out = masker.draw_prior(x)
    handle.remove()
    assert calls == []
    for name, value in before.items():
        assert torch.equal(getattr(masker.policy, name), value)
    assert out.mask.shape == (1, 1, S, S) and out.log_probs is None
    assert torch.equal(out.masked, x * out.mask)
    expected_m = torch.sigmoid(before["base_alpha"] - before["base_beta"]).mean()
    torch.testing.assert_close(out.stats["expected_m"], expected_m, rtol=1e-6, atol=0)


def uniform_masker() -> NoiseMasker:
    """Oracle 4's setting: zero prior buffers and zero last head layers, so alpha = beta = 1."""
    masker = make_masker()
    with torch.no_grad():
        masker.policy.base_alpha.zero_()
        masker.policy.base_beta.zero_()
        for head in (masker.policy.alpha_head, masker.policy.beta_head):
            head[6].weight.zero_()
            head[6].bias.zero_()
    return masker


def test_loss_identity_at_the_uniform_beta():
    """Oracle 4: logits 0, every logp = 0, L_b = log(G^2), loss = log(G^2) * CE; oracle 5c: weight 1/G^2 per cell."""
    masker = uniform_masker()
    x, y = images()
    alpha_logits, beta_logits = masker.policy(x)
    assert torch.count_nonzero(alpha_logits) == 0 and torch.count_nonzero(beta_logits) == 0
    out = masker.draw(x)
    torch.testing.assert_close(out.log_probs, torch.zeros(B, G * G), rtol=0, atol=1e-6)
    ce = F.cross_entropy(classifier()(out.masked), y)
    lp = out.log_probs.detach().requires_grad_()
    loss, scale = masker.loss(ce, lp)
    assert scale.item() == pytest.approx(math.log(G * G), rel=1e-6)
    assert loss.item() == pytest.approx(math.log(G * G) * ce.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, lp)
    torch.testing.assert_close(grad, torch.full_like(grad, ce.item() / (B * G * G)), rtol=1e-5, atol=0)


def test_gradient_routing():
    """Oracle 5: classifier grad = mean LSE * dCE (float64, so 1e-5 is not float32 rounding of the two
    summation orders); CE alone reaches no policy parameter; all grads finite."""
    masker, clf = make_masker().double(), classifier().double()
    x, y = images()
    x = x.double()
    out = masker.draw(x)
    ce = F.cross_entropy(clf(out.masked), y)
    loss, scale = masker.loss(ce, out.log_probs)
    clf_params, policy_params = list(clf.parameters()), list(masker.policy.parameters())
    g_loss = torch.autograd.grad(loss, clf_params, retain_graph=True)
    g_ce = torch.autograd.grad(ce, clf_params + policy_params, retain_graph=True, allow_unused=True)
    for a, b in zip(g_loss, g_ce[: len(clf_params)], strict=True):
        torch.testing.assert_close(a, scale * b, rtol=1e-5, atol=1e-8)
    assert all(g is None for g in g_ce[len(clf_params) :])  # the mask carries no graph
    loss.backward()
    grads = [p.grad for p in clf_params + policy_params]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert masker.policy.alpha_head[6].weight.grad.abs().sum() > 0


def test_reinforce_masker_trains_the_classifier_on_plain_ce():
    masker, clf = make_masker("reinforce"), classifier()
    x, y = images()
    out = masker.draw(x)
    logits = clf(out.masked)
    ce_per_image = F.cross_entropy(logits, y, reduction="none")
    loss, scale = masker.loss(ce_per_image.mean(), out.log_probs, per_sample_cost=ce_per_image)
    assert scale.item() == 1.0
    clf_params = list(clf.parameters())
    g_loss = torch.autograd.grad(loss, clf_params, retain_graph=True)
    g_ce = torch.autograd.grad(ce_per_image.mean(), clf_params, retain_graph=True)
    for a, b in zip(g_loss, g_ce, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    loss.backward()
    assert masker.policy.alpha_head[6].weight.grad.abs().sum() > 0
    with pytest.raises(PGNoiseMaskError, match="needs per_sample_cost"):
        masker.loss(ce_per_image.mean(), out.log_probs)


def test_random_control_arm():
    masker = make_masker("random")
    assert masker.policy is None and sum(p.numel() for p in masker.parameters()) == 0
    x, _ = images()
    out = masker.draw(x, torch.Generator().manual_seed(0))
    assert out.mask.shape == (B, 1, S, S) and out.log_probs is None
    assert (out.stats["alpha"].item(), out.stats["beta"].item(), out.stats["expected_m"].item()) == (
        1.0,
        1.0,
        0.5,
    )
    ce = torch.tensor(1.5, requires_grad=True)
    loss, scale = masker.loss(ce)
    assert scale.item() == pytest.approx(math.log(G * G), rel=1e-6)
    assert loss.item() == pytest.approx(1.5 * math.log(G * G), rel=1e-6)
    assert masker.draw_prior(x).mask.shape == (1, 1, S, S)


def test_stats():
    masker = make_masker()
    x, _ = images()
    masker.eval()  # logits without an EMA step, to recompute them
    alpha_logits, beta_logits = masker.policy(x)
    out = masker.draw(x, torch.Generator().manual_seed(0))
    alpha, beta = alpha_logits.exp(), beta_logits.exp()
    tol = {"rtol": 1e-5, "atol": 0.0}
    torch.testing.assert_close(out.stats["alpha"], alpha.mean(), **tol)
    torch.testing.assert_close(out.stats["beta"], beta.mean(), **tol)
    torch.testing.assert_close(out.stats["expected_m"], (alpha / (alpha + beta)).mean(), **tol)
    torch.testing.assert_close(out.stats["mask_mean"], out.mask.mean(), **tol)
    torch.testing.assert_close(
        out.stats["mask_std"], out.mask.view(B, -1).std(1, unbiased=False).mean(), **tol
    )
    assert all(not v.requires_grad and v.shape == () for v in out.stats.values())


def test_determinism_with_a_seeded_generator():
    """Oracle 12: the same seeds give the same mask, log densities and loss; another generator seed does not."""
    x, y = images()
    runs = []
    for _ in range(2):
        masker, clf = make_masker(seed=3), classifier(seed=4)
        out = masker.draw(x, torch.Generator().manual_seed(11))
        loss, _ = masker.loss(F.cross_entropy(clf(out.masked), y), out.log_probs)
        runs.append((out.mask, out.log_probs, loss))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    other = make_masker(seed=3).draw(x, torch.Generator().manual_seed(12))
    assert not torch.equal(other.mask, runs[0][0])


def test_log_probs_are_those_of_the_mask_cells():
    """The draw's log densities belong to the cells that made its mask (same sample, one generator)."""
    masker = make_masker().eval()
    x, _ = images()
    out = masker.draw(x, torch.Generator().manual_seed(5))
    alpha_logits, beta_logits = masker.policy(x)
    m = sample_cells(alpha_logits, beta_logits, torch.Generator().manual_seed(5))
    assert torch.equal(out.mask, cells_to_mask(m, S, K, SIGMA))
    torch.testing.assert_close(out.log_probs, beta_log_prob(m, alpha_logits, beta_logits), rtol=0, atol=0)


def test_errors_are_one_line():
    with pytest.raises(
        PGNoiseMaskError, match=r"^estimator must be 'faithful', 'reinforce' or 'random', got 'adv'$"
    ):
        NoiseMasker(grid=G, image_size=S, kernel_size=K, sigma=SIGMA, estimator="adv", trunk=TRUNK)
    with pytest.raises(PGNoiseMaskError, match="kernel_size must be a positive odd number, got 4"):
        NoiseMasker(grid=G, image_size=S, kernel_size=4, sigma=SIGMA, trunk=TRUNK)
    with pytest.raises(PGNoiseMaskError, match="grid 64 is larger than the image size 32"):
        NoiseMasker(grid=64, image_size=S, kernel_size=K, sigma=SIGMA, trunk=TRUNK)
    with pytest.raises(PGNoiseMaskError, match="has no integer num_features"):
        NoisePolicy(grid=G, trunk=nn.Identity())
    with pytest.raises(PGNoiseMaskError, match="mix and momentum"):
        NoisePolicy(grid=G, trunk=TRUNK, mix=1.5)
    masker = make_masker()
    x, _ = images(batch=1)
    with pytest.raises(PGNoiseMaskError, match="batch of at least 2 in training mode"):
        masker.draw(x)
    with pytest.raises(PGNoiseMaskError, match=r"images must be \(B, C, 32, 32\), got \(4, 3, 28, 28\)"):
        masker.draw(torch.zeros(B, 3, 28, 28))
    with pytest.raises(PGNoiseMaskError, match="needs the draw's log_probs"):
        masker.loss(torch.tensor(1.0))
