"""DDIM bookkeeping, inversion and denoising on top of diffusers' ``DDIMScheduler`` (spec §2.0, §2.2).

Timesteps (SD config, ``N`` steps, ``"leading"`` spacing, ``steps_offset=1``): stride ``Δ = 1000 // N``,
``timesteps = [1 + Δ(N-1), ..., 1 + Δ, 1]`` (N = 50: 981, 961, ..., 1). Inversion strength ``s`` gives
``n_inv = round(s N)`` steps (Python's round, as the official scripts), ending at ``t* = timesteps[N - n_inv]``;
denoising starts at that index (N = 50: s = 0.75 -> 38 steps, t* = 741; s = 0.7 -> 35, t* = 681).

Inversion step from level ``τ - Δ`` to ``τ`` (η = 0; the UNet is evaluated on the lower-level latent at
the *higher* timestep ``τ``, the usual DDIM-inversion approximation)::

    ā_prev = alphas_cumprod[τ - Δ]  (final_alpha_cumprod = alphas_cumprod[0] when τ - Δ < 0)
    x̂0 = (z - sqrt(1 - ā_prev) ε) / sqrt(ā_prev);   z' = sqrt(ā_τ) x̂0 + sqrt(1 - ā_τ) ε

The denoising step is ``DDIMScheduler.step(ε, τ, z, eta=0).prev_sample``, its algebraic inverse for the
same ``ε``. Latents are (B, C, h, w) tensors of any float dtype; the arithmetic runs in float32 when the
latent is half precision, the result is cast back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = [
    "SD_SCHEDULER_CONFIG",
    "EpsFn",
    "InversionPlan",
    "ddim_denoise",
    "ddim_invert",
    "ddim_step",
    "inversion_plan",
    "inversion_step",
    "make_scheduler",
]

#: Stable Diffusion 1.5's DDIM configuration (official scripts)
SD_SCHEDULER_CONFIG: dict = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "num_train_timesteps": 1000,
}

#: ε-model: ``eps_fn(z, t) -> ε`` with ``z`` (B, C, h, w) and integer timestep ``t``; same shape out
EpsFn = Callable[[Tensor, int], Tensor]


def make_scheduler(num_steps: int = 50, **overrides) -> DDIMScheduler:
    """A ``DDIMScheduler`` with the SD config (``overrides`` replace keys) and ``set_timesteps(num_steps)`` done."""
    if num_steps < 1:
        raise DirectDragError(f"num_steps must be a positive integer, got {num_steps}")
    scheduler = DDIMScheduler(**{**SD_SCHEDULER_CONFIG, **overrides})
    scheduler.set_timesteps(num_steps)
    return scheduler


class InversionPlan:
    """Timestep bookkeeping for inversion strength ``s`` on a scheduler with ``N`` timesteps set.

    Attributes: ``n_inv`` (inversion steps), ``start_index`` (= N - n_inv, first denoising index),
    ``t_star`` (timestep where inversion ends and denoising starts), ``inversion_timesteps``
    (ascending, the ``τ`` of each inversion step) and ``denoise_timesteps`` (descending, ``n_inv`` of them).
    """

    def __init__(self, timesteps: list[int], strength: float) -> None:
        n = len(timesteps)
        if not 0.0 < strength <= 1.0:
            raise DirectDragError(f"inversion strength must be in (0, 1], got {strength}")
        self.n_inv: int = round(strength * n)
        if self.n_inv < 1:
            raise DirectDragError(f"inversion strength {strength} gives no inversion step with {n} steps")
        self.start_index: int = n - self.n_inv
        self.t_star: int = int(timesteps[self.start_index])
        self.denoise_timesteps: list[int] = [int(t) for t in timesteps[self.start_index :]]
        self.inversion_timesteps: list[int] = self.denoise_timesteps[::-1]

    def __repr__(self) -> str:
        return f"InversionPlan(n_inv={self.n_inv}, start_index={self.start_index}, t_star={self.t_star})"


def inversion_plan(scheduler: DDIMScheduler, strength: float) -> InversionPlan:
    """The :class:`InversionPlan` of ``scheduler`` (``set_timesteps`` must have been called) at ``strength``."""
    if scheduler.num_inference_steps is None:
        raise DirectDragError("the scheduler has no timesteps; call set_timesteps first")
    return InversionPlan([int(t) for t in scheduler.timesteps], strength)


def _stride(scheduler: DDIMScheduler) -> int:
    return scheduler.config.num_train_timesteps // scheduler.num_inference_steps


def _alpha(scheduler: DDIMScheduler, t: int) -> Tensor:
    """ā_t as a float64 scalar; ``final_alpha_cumprod`` for ``t < 0``."""
    a = scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod
    return torch.as_tensor(a, dtype=torch.float64)


def _compute(z: Tensor) -> torch.dtype:
    return torch.float32 if z.dtype in (torch.float16, torch.bfloat16) else z.dtype


def inversion_step(scheduler: DDIMScheduler, eps: Tensor, t: int, z: Tensor) -> Tensor:
    """One DDIM inversion step (η = 0): ``z`` at level ``t - Δ`` -> level ``t`` with ``eps = ε(z, t)``."""
    dt = _compute(z)
    a_prev = _alpha(scheduler, int(t) - _stride(scheduler)).to(dt)
    a_t = _alpha(scheduler, int(t)).to(dt)
    zf, ef = z.to(dt), eps.to(dt)
    x0 = (zf - (1 - a_prev).sqrt() * ef) / a_prev.sqrt()
    return (a_t.sqrt() * x0 + (1 - a_t).sqrt() * ef).to(z.dtype)


def ddim_step(scheduler: DDIMScheduler, eps: Tensor, t: int, z: Tensor) -> Tensor:
    """One DDIM denoising step (η = 0) from level ``t`` to ``t - Δ``: diffusers' ``DDIMScheduler.step``."""
    dt = _compute(z)
    out = scheduler.step(eps.to(dt), int(t), z.to(dt), eta=0.0, return_dict=True).prev_sample
    return out.to(z.dtype)


@torch.no_grad()
def ddim_invert(eps_fn: EpsFn, z0: Tensor, scheduler: DDIMScheduler, plan: InversionPlan) -> list[Tensor]:
    """Invert ``z0`` (B, C, h, w) for ``plan.n_inv`` steps; returns ``[z0, z_τ1, ..., z_t*]`` (n_inv + 1)."""
    traj = [z0]
    z = z0
    for t in plan.inversion_timesteps:
        z = inversion_step(scheduler, eps_fn(z, t), t, z)
        traj.append(z)
    return traj


@torch.no_grad()
def ddim_denoise(eps_fn: EpsFn, z: Tensor, scheduler: DDIMScheduler, timesteps: list[int]) -> Tensor:
    """Plain DDIM denoising of ``z`` over ``timesteps`` (descending, e.g. ``plan.denoise_timesteps``)."""
    for t in timesteps:
        z = ddim_step(scheduler, eps_fn(z, t), t, z)
    return z
