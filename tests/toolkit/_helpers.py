"""Tiny models and side networks shared by the toolkit tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionkit.backbones.intermediates import Intermediates


def make_vit(name: str = "test_vit", **kwargs) -> nn.Module:
    """timm ``test_vit`` at 32 px with 4 px patches: an 8x8 token grid, depth 6, width 64."""
    import timm

    return timm.create_model(name, **{"img_size": 32, "patch_size": 4, "num_classes": 5, **kwargs})


def make_resnet(**kwargs) -> nn.Module:
    """timm ``test_resnet`` (BatchNorm, 5 feature levels: stem + 4 stages)."""
    import timm

    return timm.create_model("test_resnet", **{"num_classes": 5, **kwargs})


def make_tiny_clip():
    """A random-init open_clip ``CLIP`` small enough for unit tests (2 image, 3 text blocks)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32)
    text = CLIPTextCfg(context_length=12, vocab_size=64, width=32, heads=2, layers=3)
    return CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()


class PooledSide(nn.Module):
    """Side network: mean-pool every level (tokens or maps), concatenate, classify.

    Input: an :class:`Intermediates` with NLC ``(B, N, C_l)`` or NCHW ``(B, C_l, H, W)`` features.
    Output: logits ``(B, num_classes)``.
    """

    def __init__(self, widths: list[int], num_classes: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(w, 16) for w in widths)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16 * len(widths), num_classes)

    def forward(self, feats: Intermediates) -> Tensor:
        pooled = [f.mean(1) if f.ndim == 3 else f.mean((2, 3)) for f in feats.features]
        z = torch.cat([torch.relu(p(v)) for p, v in zip(self.proj, pooled, strict=True)], dim=1)
        return self.head(self.drop(z))
