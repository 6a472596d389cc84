"""DirectDrag tests; shared tiny random diffusers components (spec §7.2, no downloads)."""

from __future__ import annotations

import torch
from torch import Tensor

TINY_UNET_CONFIG: dict = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
}


def tiny_unet(seed: int = 0, **overrides):
    """A random ``UNet2DConditionModel`` (spec §7.2: 32/64 channels, 16x16 latent, 4 transformer blocks), eval, frozen."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**TINY_UNET_CONFIG, **overrides}).eval()
    unet.requires_grad_(False)
    return unet


def null_context(batch: int = 1, seed: int = 1) -> Tensor:
    """The fixed stand-in for CLIP("") (spec §6.7): a seeded randn (batch, 4, 32) buffer."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 32, generator=g).expand(batch, -1, -1).contiguous()
