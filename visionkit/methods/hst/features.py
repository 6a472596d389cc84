"""``HSTFeatures``: what the frozen ViT hands to HST's side network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["HSTFeatures"]


@dataclass
class HSTFeatures:
    """Every ViT block's full output, and how to split it into the meta slot and the patch tokens.

    Attributes:
        images: ``(B, C, H, W)``, the side stem's input.
        tokens: per ViT block, its output ``(B, m + P + h*w, D)``: ``m`` meta tokens, ``P`` prefix
            (class / register / distillation) tokens, the patch tokens row-major over ``grid``.
        grid: ``(h, w)``.
        num_meta: ``m`` (0 for the detached variant).
        num_prefix: ``P``.
        summary: what fills the meta slot: ``"meta"`` (the meta tokens' outputs, official),
            ``"class"`` (the class-token output) or ``"mean"`` (the mean patch token).
    """

    images: Tensor
    tokens: list[Tensor]
    grid: tuple[int, int]
    num_meta: int
    num_prefix: int
    summary: Literal["meta", "class", "mean"] = "meta"

    def split(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(meta slot (B, m or 1, E), patches (B, h*w, E))`` of a block output ``t`` or of any
        token-wise affine map of it (the T-Bridge commutes with the slicing and the mean)."""
        patches = t[:, self.num_meta + self.num_prefix:]
        if self.summary == "meta":
            return t[:, : self.num_meta], patches
        if self.summary == "class":
            return t[:, self.num_meta : self.num_meta + 1], patches
        return patches.mean(dim=1, keepdim=True), patches

    @property
    def metas(self) -> list[Tensor]:
        """Per ViT block, the meta slot ``(B, m or 1, D)``."""
        return [self.split(t)[0] for t in self.tokens]

    @property
    def patches(self) -> list[Tensor]:
        """Per ViT block, the patch tokens ``(B, h*w, D)`` (meta and prefix tokens removed)."""
        return [self.split(t)[1] for t in self.tokens]
