"""Image <-> latent conversion around a diffusers ``AutoencoderKL`` (spec §2.0, §6.6, §6.13).

Encode: ``z0 = s * VAE.encode(x).latent_dist.mean`` with ``x = img / 127.5 - 1`` (the posterior
**mean**, never a sample; ``s = vae.config.scaling_factor``, 0.18215 for SD1.5). Decode:
``x = clamp(VAE.decode(z / s) / 2 + 0.5, 0, 1)``, resized bilinearly back to the input H x W.
Images are (B, 3, H, W) tensors with values in [0, 255] (uint8 or float).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["decode_latents", "encode_image", "fit_max_side"]


def _scaling(vae: nn.Module) -> float:
    return float(getattr(vae.config, "scaling_factor", 0.18215))


@torch.no_grad()
def encode_image(vae: nn.Module, image: Tensor) -> Tensor:
    """(B, 3, H, W) pixels in [0, 255] -> scaled posterior-mean latent (B, C, h, w) in the VAE's dtype."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise DirectDragError(f"expected a (B, 3, H, W) image, got shape {tuple(image.shape)}")
    p = next(vae.parameters())
    x = image.to(device=p.device, dtype=p.dtype) / 127.5 - 1
    return _scaling(vae) * vae.encode(x).latent_dist.mean


@torch.no_grad()
def decode_latents(vae: nn.Module, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Scaled latent (B, C, h, w) -> image (B, 3, H, W) float32 in [0, 1], bilinearly resized to ``size``."""
    p = next(vae.parameters())
    x = vae.decode(z.to(device=p.device, dtype=p.dtype) / _scaling(vae)).sample
    x = (x.float() / 2 + 0.5).clamp(0, 1)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def fit_max_side(height: int, width: int, max_side: int = 512) -> tuple[tuple[int, int], float]:
    """DXD's shrink: the (H', W') with max(H', W') <= ``max_side`` (aspect kept) and the factor applied.

    Images already small enough are kept (factor 1). Points scale with ``int(round(v * factor))``.
    """
    if height < 1 or width < 1:
        raise DirectDragError(f"image size must be positive, got {height}x{width}")
    factor = min(1.0, max_side / max(height, width))
    return (int(round(height * factor)), int(round(width * factor))), factor
