"""ToCo tests; shared tiny models."""

from __future__ import annotations

from torch import nn

from visionkit.methods.toco import ToCo


def tiny_vit(**kwargs) -> nn.Module:
    """A random timm ViT at 32 px with 4 px patches (8x8 grid + class token), width 32, depth 4, 2 heads."""
    from timm.models.vision_transformer import VisionTransformer

    args = {
        "img_size": 32,
        "patch_size": 4,
        "embed_dim": 32,
        "depth": 4,
        "num_heads": 2,
        "num_classes": 0,
        "dynamic_img_size": True,
    }
    return VisionTransformer(**{**args, **kwargs})


def tiny_toco(num_classes: int = 3, **kwargs) -> ToCo:
    """ToCo on :func:`tiny_vit` with small heads (decoder 16 wide, CTC 32 -> 8 -> 16)."""
    args = {
        "decoder_dim": 16,
        "decoder_dilation": 2,
        "ctc_dim": 16,
        "ctc_hidden_dim": 32,
        "ctc_bottleneck_dim": 8,
    }
    return ToCo(tiny_vit(), num_classes, **{**args, **kwargs})


#: ``ToCoTask`` arguments: a ViT at 32 px with 4 px patches (8x8 tokens), width 32, depth 3; small heads; every
#: loss term from the first step.
TINY_TASK = {
    "backbone": "vit_tiny_patch16_224", "num_classes": 3, "image_size": 32, "aux_layer": 1,
    "backbone_kwargs": {"patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 2},
    "decoder_dim": 16, "decoder_dilation": 2, "ctc_dim": 16, "ctc_hidden_dim": 32, "ctc_bottleneck_dim": 8,
    "cam_scales": (1.0, 0.5), "num_crops": 2, "crop_size": 8, "par_iterations": 2, "seg_after": -1, "lr": 1e-3,
}
