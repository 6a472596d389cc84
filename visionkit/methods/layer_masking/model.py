"""The layer-masked classifier as plain torch (no Lightning, no files).

:func:`layer_masked_classifier` converts a timm classifier in place with
:func:`~visionkit.methods.layer_masking.convert.convert`: the result *is* the classifier (same
class name prefix ``LayerMasked``, same state-dict keys, same plain forward) with
``forward(images, keep_mask=None) -> logits (B, K)``. :func:`head_only` puts it in a
:class:`~visionkit.tuners.BaseTuner` that trains only the classifier head (a linear probe); the
masked forward passes through the tuner. :func:`first_layer_view` is what the first masked convolution sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.backbones.factory import classifier_prefixes
from visionkit.methods.layer_masking.convert import convert
from visionkit.methods.layer_masking.layers import FILLS, neighbor_pad
from visionkit.tuners import BaseTuner

__all__ = ["first_layer_view", "head_only", "layer_masked_classifier", "masked_network"]


def layer_masked_classifier(net: nn.Module, fill: str = "neighbor", avgpool_renorm: bool = False) -> nn.Module:
    """``net`` converted to layer masking, in place; returns it.

    The result's ``forward(images (B, C, H, W), keep_mask=None (B, 1, H, W), 1 = visible)``
    returns logits ``(B, K)``; without a mask it is the plain classifier.

    Raises:
        ValueError: an unknown ``fill``.
        UnsupportedLayerError: a layer without a mask rule (named by path and type).
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got '{fill}'")
    return convert(net, fill=fill, avgpool_renorm=avgpool_renorm)


def head_only(net: nn.Module) -> BaseTuner:
    """``net`` in a tuner that trains only its classifier head (a linear probe); ``keep_mask`` passes through."""
    return BaseTuner(net, trainable=classifier_prefixes(net))


def masked_network(model: nn.Module) -> nn.Module:
    """The converted network of :func:`layer_masked_classifier`'s result (inside its tuner, if any)."""
    return model.base_model if isinstance(model, BaseTuner) else model


def first_layer_view(net: nn.Module, images: Tensor, keep: Tensor) -> Tensor:
    """The image as the first spatial convolution of ``net`` sees it under ``keep``.

    Hidden pixels within reach are neighbour-padded; pixels it never sees or fills are a grey
    checkerboard (not a colour).

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        keep: ``(B, 1, H, W)``, 1 = visible.

    Returns:
        ``(B, C, H, W)`` in [0, 1].
    """
    _, _, h, w = images.shape
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)), None)
    rings = max(first.dilation[0] * (first.kernel_size[0] - 1), 1) if first is not None else 2
    seen = neighbor_pad(images, keep, rings).clamp(0, 1)
    reached = F.max_pool2d(keep, 2 * rings + 1, 1, rings) > 0  # pixels the first conv sees or fills
    yy, xx = torch.meshgrid(torch.arange(h, device=images.device), torch.arange(w, device=images.device), indexing="ij")
    checker = (0.55 + 0.3 * ((yy // 2 + xx // 2) % 2)).to(images.dtype).expand_as(seen)
    return torch.where(reached, seen, checker)
