"""Per-image LoRA on the UNet with PEFT (spec §2.1, §6.17).

``add_lora``: rank-r adapters on every attention projection (``to_q``, ``to_k``, ``to_v``, ``to_out.0``
of self- and cross-attention), ``lora_alpha = r``, PEFT's ``"gaussian"`` init (down ~ N(0, 1/r), up = 0:
the UNet is unchanged at initialisation); every base parameter is frozen. ``train_lora``: the DDPM
ε-objective ``MSE(ε̂(z_t, t, c), ε)`` with ``t ~ U{0, ..., T-1}``, AdamW (lr 5e-4, betas (0.9, 0.999),
weight decay 1e-2, eps 1e-8), constant LR; only LoRA parameters are optimised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import Tensor, nn

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["LORA_TARGETS", "add_lora", "lora_parameters", "train_lora"]

#: attention projections that receive LoRA (official: all of them, self and cross attention)
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(unet: nn.Module, rank: int = 16, adapter_name: str = "directdrag") -> list[nn.Parameter]:
    """Add a rank-``rank`` LoRA adapter to ``unet`` (in place), freeze the rest; returns the LoRA parameters."""
    from peft import LoraConfig

    if rank < 1:
        raise DirectDragError(f"lora_rank must be a positive integer, got {rank}")
    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS), init_lora_weights="gaussian"
    )
    unet.add_adapter(config, adapter_name=adapter_name)
    params = lora_parameters(unet)
    for p in params:
        p.requires_grad_(True)
    return params


def lora_parameters(unet: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters (``lora_A`` / ``lora_B`` weights) of ``unet``."""
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def train_lora(
    unet: nn.Module,
    sample_latents: Callable[[torch.Generator], Tensor],
    context: Tensor,
    scheduler: DDIMScheduler,
    steps: int = 70,
    lr: float = 5e-4,
    seed: int = 0,
) -> list[float]:
    """Fit the LoRA parameters for ``steps`` AdamW steps; returns the per-step losses.

    ``sample_latents(gen)`` returns a fresh (B, C, h, w) batch of scaled latents each step (e.g. a new
    posterior sample of the augmented views); ``context`` (1 or B, L, D) is the text embedding.
    """
    params = lora_parameters(unet)
    if not params:
        raise DirectDragError("the UNet has no LoRA parameters; call add_lora first")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    losses = []
    was_training = unet.training
    unet.train()
    for _ in range(steps):
        z0 = sample_latents(gen)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (z0.shape[0],), generator=gen)
        zt = scheduler.add_noise(z0, noise, t)
        ctx = context.expand(z0.shape[0], -1, -1)
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=ctx).sample.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    unet.train(was_training)
    return losses
