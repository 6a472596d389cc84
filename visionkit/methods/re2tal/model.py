"""Re²TAL's localizer in pure torch: a (rewired) per-frame image backbone, temporal features, the 1-D head.

``video (B, T, C, H, W)`` -> every frame through the backbone (pooled features ``(B*T, D)``) ->
``(B, D, L)`` with ``L = T / snippet_frames`` (features averaged over each snippet of consecutive
frames) -> :class:`~visionkit.methods.re2tal.head.TemporalHead`. OpenTAD instead runs a 3-D video
backbone on the whole clip, pools space and interpolates time to ``L`` steps; a 2-D backbone per frame
is what the tiny CPU setting allows, and :func:`~visionkit.methods.re2tal.rewire` covers timm's 2-D models.

Two ways to train the backbone:

* end to end (``frozen=False``): its rewired stages run their memory-saving backward, so training memory
  inside a stage does not grow with its depth;
* frozen (``frozen=True``): the frozen-feature baseline: the backbone stays in eval mode, its parameters
  do not require grad and it runs under ``torch.no_grad()``; only the head trains.

``norm_eval=True`` is OpenTAD's ``norm_eval``: every norm layer of the backbone stays in eval mode and its
affine parameters are frozen (BatchNorm then uses its running statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from visionkit.methods.re2tal.errors import TALInputError
from visionkit.methods.re2tal.head import TemporalHead

__all__ = ["NORM_TYPES", "Re2TALLocalizer", "backbone_width", "freeze_norms", "norm_modules"]

#: Layers that ``norm_eval`` keeps in eval mode with frozen affine parameters.
NORM_TYPES: tuple[type[nn.Module], ...] = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d,
                                           nn.InstanceNorm2d, nn.InstanceNorm3d)


def norm_modules(module: nn.Module) -> Iterator[nn.Module]:
    """The norm layers (:data:`NORM_TYPES`) under ``module``."""
    return (m for m in module.modules() if isinstance(m, NORM_TYPES))


def freeze_norms(module: nn.Module) -> nn.Module:
    """Freeze the affine parameters of every norm layer under ``module`` and put it in eval mode; returns ``module``.

    Call it again after ``module.train()`` (which sets the norms back to train mode).
    """
    for norm in norm_modules(module):
        norm.eval()
        for p in norm.parameters():
            p.requires_grad_(False)
    return module


def backbone_width(backbone: nn.Module) -> int:
    """Width ``D`` of the pooled features of a timm model built with ``num_classes=0`` (``num_features``)."""
    width = getattr(backbone, "num_features", None)
    if not isinstance(width, int) or width < 1:
        raise TALInputError(
            f"{type(backbone).__name__} has no 'num_features'; expected a timm model built with num_classes=0, "
            "whose forward gives pooled (N, D) features")
    return width


class Re2TALLocalizer(nn.Module):
    """Per-frame backbone + temporal head.

    ``forward(video)``: ``(B, T, C, H, W)`` (normalised frames) -> ``(logits (B, L, K), offsets (B, L, 2))``
    (:class:`~visionkit.methods.re2tal.head.TemporalHead`), ``L = T / snippet_frames``.

    Args:
        backbone: a timm model with ``num_classes=0`` (``(N, C, H, W) -> (N, D)``), rewired or not.
        num_classes: action classes ``K``.
        frozen: the frozen-feature arm (backbone in eval mode, no grad, not trained).
        norm_eval: keep the backbone's norm layers in eval mode with frozen affine parameters (OpenTAD).
        snippet_frames: consecutive frames averaged into one temporal step (``T`` must be a multiple).
        **head_kwargs: :class:`~visionkit.methods.re2tal.head.TemporalHead` arguments (``width``, ...).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, frozen: bool = False, norm_eval: bool = False,
                 snippet_frames: int = 1, **head_kwargs: Any) -> None:
        super().__init__()
        if snippet_frames < 1:
            raise TALInputError(f"snippet_frames must be a positive number of frames, got {snippet_frames}")
        self.backbone = backbone
        self.frozen, self.norm_eval, self.snippet_frames = frozen, norm_eval, snippet_frames
        self.head = TemporalHead(backbone_width(backbone), num_classes, **head_kwargs)
        if frozen:
            backbone.requires_grad_(False)
        if norm_eval:
            freeze_norms(backbone)
        self.train(self.training)

    def train(self, mode: bool = True) -> Re2TALLocalizer:
        """Train mode for the head (and the backbone unless frozen); norms stay in eval mode with ``norm_eval``."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        elif self.norm_eval:
            for norm in norm_modules(self.backbone):
                norm.eval()
        return self

    def features(self, video: Tensor) -> Tensor:
        """Temporal features ``(B, D, L)`` of clips ``(B, T, C, H, W)``."""
        if video.ndim != 5:
            raise TALInputError(f"video must be a batch of clips (B, T, C, H, W), got shape {tuple(video.shape)}")
        batch, frames = video.shape[:2]
        if frames % self.snippet_frames:
            raise TALInputError(
                f"clips of {frames} frames do not split into snippets of snippet_frames={self.snippet_frames}; "
                "use a divisor of the clip length")
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            pooled = self.backbone(video.flatten(0, 1))
        if pooled.ndim != 2:
            raise TALInputError(
                f"the backbone gave features of shape {tuple(pooled.shape)} per frame batch; expected pooled (N, D) "
                "features (a timm model built with num_classes=0)")
        steps = pooled.reshape(batch, frames // self.snippet_frames, self.snippet_frames, -1).mean(2)
        return steps.transpose(1, 2)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.features(video))
