"""DDIM on diffusers' scheduler: spec §5 oracles 1 (step and inversion step are inverses, incl. the
first step's ``alphas_cumprod[0]``), 2 (inversion -> sampling exact for an input-independent ε; with
the tiny UNet the error shrinks with N) and 3 (timestep bookkeeping)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from tests.methods.directdrag import null_context, tiny_unet
from visionkit.methods.directdrag import (
    DirectDragError,
    ddim_denoise,
    ddim_invert,
    ddim_step,
    inversion_plan,
    inversion_step,
    make_scheduler,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.mark.parametrize("num_steps", [10, 50])
def test_step_and_inversion_step_are_inverses(num_steps: int) -> None:
    """Oracle 1: inversion t-Δ -> t then DDIM step t -> t-Δ with the same ε returns x, for every t (1e-5)."""
    sched = make_scheduler(num_steps)
    g = torch.Generator().manual_seed(0)
    for t in [int(t) for t in sched.timesteps]:
        x = torch.randn(2, 4, 8, 8, generator=g)
        eps = torch.randn(2, 4, 8, 8, generator=g)
        up = inversion_step(sched, eps, t, x)
        back = ddim_step(sched, eps, t, up)
        assert (back - x).abs().max() < 1e-5, t
        assert (up - x).abs().max() > 1e-3  # the step does move the latent


def test_first_inversion_step_uses_alphas_cumprod_0() -> None:
    """Oracle 1, t - Δ < 0: both directions use ``alphas_cumprod[0]`` (``set_alpha_to_one=False``), not 1."""
    sched = make_scheduler(10)
    t = 1  # the lowest timestep; t - Δ = -99
    x = torch.randn(1, 4, 4, 4)
    eps = torch.randn(1, 4, 4, 4)
    a_prev, a_t = sched.alphas_cumprod[0], sched.alphas_cumprod[t]
    x0 = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
    expected = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    assert torch.allclose(inversion_step(sched, eps, t, x), expected, atol=1e-6)
    with_one = a_t.sqrt() * x + (1 - a_t).sqrt() * eps  # what ā_prev = 1 would give
    assert (inversion_step(sched, eps, t, x) - with_one).abs().max() > 1e-3
    assert (ddim_step(sched, eps, t, inversion_step(sched, eps, t, x)) - x).abs().max() < 1e-5


def test_inversion_then_sampling_is_exact_for_input_independent_eps() -> None:
    """Oracle 2: with a stub ε(z, t) = fixed noise per t, invert n_inv steps and sample back: z0 to 1e-5."""
    sched = make_scheduler(10)
    plan = inversion_plan(sched, 0.7)
    noise = {
        int(t): torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(int(t)))
        for t in sched.timesteps
    }
    calls: list[int] = []

    def eps_fn(z: torch.Tensor, t: int) -> torch.Tensor:
        calls.append(t)
        return noise[t]

    z0 = torch.randn(1, 4, 16, 16)
    traj = ddim_invert(eps_fn, z0, sched, plan)
    assert len(traj) == plan.n_inv + 1 and calls == plan.inversion_timesteps
    recon = ddim_denoise(eps_fn, traj[-1], sched, plan.denoise_timesteps)
    assert (recon - z0).abs().max() < 1e-5
    assert (traj[-1] - z0).abs().max() > 0.1


def test_tiny_unet_inversion_error_shrinks_with_more_steps() -> None:
    """Oracle 2 with the tiny random UNet: the reconstruction error is finite and falls from N = 10 to N = 50."""
    unet = tiny_unet()
    ctx = null_context()
    z0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))

    def eps_fn(z: torch.Tensor, t: int) -> torch.Tensor:
        return unet(z, t, encoder_hidden_states=ctx).sample

    errors = []
    for n in (10, 50):
        sched = make_scheduler(n)
        plan = inversion_plan(sched, 0.7)
        zt = ddim_invert(eps_fn, z0, sched, plan)[-1]
        recon = ddim_denoise(eps_fn, zt, sched, plan.denoise_timesteps)
        errors.append(float((recon - z0).abs().mean()))
    assert all(e == e and e < float("inf") for e in errors)
    assert errors[1] < 0.5 * errors[0], errors


@pytest.mark.parametrize(
    ("num_steps", "strength", "n_inv", "t_star", "start"),
    [(50, 0.75, 38, 741, 12), (50, 0.7, 35, 681, 15), (10, 0.7, 7, 601, 3), (50, 1.0, 50, 981, 0)],
)
def test_timestep_bookkeeping(num_steps: int, strength: float, n_inv: int, t_star: int, start: int) -> None:
    """Oracle 3: n_inv = round(sN), t* and the first denoising index N - n_inv (DXD 38/741, DD 35/681)."""
    sched = make_scheduler(num_steps)
    plan = inversion_plan(sched, strength)
    assert (plan.n_inv, plan.t_star, plan.start_index) == (n_inv, t_star, start)
    stride = 1000 // num_steps
    assert plan.inversion_timesteps == [1 + stride * k for k in range(n_inv)]
    assert plan.denoise_timesteps == plan.inversion_timesteps[::-1]
    assert plan.denoise_timesteps[0] == int(sched.timesteps[num_steps - n_inv])


def test_bad_strength_is_one_line_error() -> None:
    sched = make_scheduler(10)
    for s in (0.0, 1.5, 0.01):
        with pytest.raises(DirectDragError) as info:
            inversion_plan(sched, s)
        assert "\n" not in error_of(info)
