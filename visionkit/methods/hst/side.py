"""HST's side network: meta tokens, T-Bridges, the 4 side stages and the classification head.

It reads :class:`HSTFeatures` (what the frozen ViT produced) and returns logits (``forward``) or the
4-level feature pyramid (``pyramid``). The ViT side (inserting the meta tokens into every block and
collecting the block outputs) is :class:`visionkit.methods.hst.HST`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from visionkit.methods.hst.errors import HSTError
from visionkit.methods.hst.features import HSTFeatures
from visionkit.methods.hst.stages import OFFICIAL_HEADS, OFFICIAL_WIDTHS, SideStage, init_side_weights

__all__ = ["BridgeOrder", "HSTSideNetwork"]

BridgeOrder = Literal["auto", "resize_first", "bridge_first"]
_ORDERS = ("auto", "resize_first", "bridge_first")


class HSTSideNetwork(nn.Module):
    """Meta tokens, T-Bridges, the 4 side stages and the classification head; called with :class:`HSTFeatures`.

    Args:
        vit_dim: ViT width ``D``.
        layers: ViT blocks of each stage (:func:`stage_layers`).
        num_classes: ``K``; 0 builds no BatchNorm/Linear head (``forward`` returns pooled ``(B, C_4)``).
        widths: ``C_1..C_4``; heads: head counts (``widths[s] % heads[s] == 0``).
        num_meta_tokens: ``m`` meta tokens per ViT block; 0 for the detached variant.
        in_chans: image channels.
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate: as in the ViT (official: 4, True, 0, 0).
        drop_path_rate: side drop-path, ramped linearly from 0 over all side blocks.
        bridge_order: ``"resize_first"`` (official), ``"bridge_first"``, or ``"auto"`` (bridge first
            where the stage map has more tokens than the ViT grid); all give the same logits.
    """

    def __init__(self, vit_dim: int, layers: Sequence[Sequence[int]], num_classes: int,
                 widths: Sequence[int] = OFFICIAL_WIDTHS, heads: Sequence[int] = OFFICIAL_HEADS, *,
                 num_meta_tokens: int = 1, in_chans: int = 3, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 bridge_order: BridgeOrder = "auto") -> None:
        super().__init__()
        if bridge_order not in _ORDERS:
            raise HSTError(f"bridge_order must be 'auto', 'resize_first' or 'bridge_first', got '{bridge_order}'")
        if num_meta_tokens < 0 or num_classes < 0:
            raise HSTError(f"num_meta_tokens and num_classes must be >= 0, got {num_meta_tokens} and {num_classes}")
        self.layers = [list(ls) for ls in layers]
        self.depth = sum(len(ls) for ls in self.layers)
        self.widths, self.heads = [int(c) for c in widths], [int(h) for h in heads]
        self.num_meta_tokens, self.bridge_order = num_meta_tokens, bridge_order
        rates = torch.linspace(0, drop_path_rate, self.depth).tolist()
        stages, first = [], 0
        for s, ls in enumerate(self.layers):
            in_dim = in_chans if s == 0 else self.widths[s - 1]
            stages.append(SideStage(s, ls, vit_dim, in_dim, self.widths[s], self.heads[s], mlp_ratio, qkv_bias,
                                    drop_rate, attn_drop_rate, rates[first:first + len(ls)]))
            first += len(ls)
        self.stages = nn.ModuleList(stages)
        self.head_norm = nn.BatchNorm1d(self.widths[-1], affine=False, eps=1e-6) if num_classes else None
        self.head = nn.Linear(self.widths[-1], num_classes) if num_classes else nn.Identity()
        self.apply(init_side_weights)
        # (L, m, D); each layer's (1, m, D) token is xavier-uniform as in the official code:
        # fan_in = m*D, fan_out = D, bound sqrt(6 / ((m+1) D)) (= sqrt(3/D) for m = 1)
        self.meta_tokens = nn.Parameter(torch.empty(self.depth, num_meta_tokens, vit_dim)) if num_meta_tokens else None
        if self.meta_tokens is not None:
            bound = math.sqrt(6.0 / ((num_meta_tokens + 1) * vit_dim))
            nn.init.uniform_(self.meta_tokens, -bound, bound)

    def pyramid(self, feats: HSTFeatures) -> list[Tensor]:
        """The 4 post-LayerNorm stage maps ``(B, C_s, H/s_s, W/s_s)``, strides 4, 8, 16, 32."""
        if len(feats.tokens) != self.depth:
            raise HSTError(f"the side network was built for {self.depth} ViT blocks, got features of {len(feats.tokens)}")
        maps, x = [], feats.images
        for stage in self.stages:
            x = stage(x, feats, self.bridge_order)
            maps.append(x)
        return maps

    def forward(self, feats: HSTFeatures) -> Tensor:
        """Logits ``(B, K)`` (pooled ``(B, C_4)`` when ``num_classes=0``).

        Raises:
            HSTError: batch size 1 in training with the BatchNorm1d head.
        """
        if self.training and self.head_norm is not None and feats.images.shape[0] == 1:
            raise HSTError("batch size 1 in training: HST's BatchNorm1d head needs at least 2 samples per batch "
                           "(use a larger batch or drop_last=True, or call eval())")
        pooled = self.pyramid(feats)[-1].mean(dim=(2, 3))  # = mean over the stage-4 tokens
        if self.head_norm is not None:
            pooled = self.head_norm(pooled)
        return self.head(pooled)
