"""Readout head (Diffusion Hyperfeatures aggregation network, the RG "appearance" head) and the
readout-guided feature alignment loss (spec §2.7).

Per decoder ResNet layer l (channels C_l), a bottleneck block on the square-resized residual maps::

    y = ReLU(GN(conv1x1(x)))  [+ ReLU(Linear(temb)) per channel, unless ``use_time=False``]
    y = ReLU(GN(conv3x3(y)));  y = GN(conv1x1(y) -> P)
    out_l = ReLU(y + GN(conv1x1(x) -> P))

and ``A(φ) = Σ_l softmax(mix)_l out_l``: (B, P, S, S). SD1.5: P = 384, bottleneck P / 4 = 96,
time-embedding width 1280, 12 layers. The loss, with w = multiplier x loss_rescale (350) and the
detached range of the edit latent at the start of the denoising step::

    L_rg = w (z_max - z_min)^2 mean_{y,x} [1 - cos(A(φ(z))_{:,y,x}, A(φ_ref)_{:,y,x})]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["BottleneckBlock", "ReadoutHead", "rg_loss"]


class BottleneckBlock(nn.Module):
    """One layer's bottleneck residual block: (B, C_in, S, S) [+ temb (B, E)] -> (B, P, S, S)."""

    def __init__(
        self, in_channels: int, out_channels: int, bottleneck: int, emb_channels: int, groups: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, bottleneck)
        self.emb = nn.Linear(emb_channels, bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, out_channels, 1, bias=False)
        self.norm3 = nn.GroupNorm(groups, out_channels)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.GroupNorm(groups, out_channels)
        )

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        if temb is not None:
            y = y + F.relu(self.emb(temb))[:, :, None, None]
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class ReadoutHead(nn.Module):
    """The aggregation network: per-layer :class:`BottleneckBlock` + softmax mixing, no output head.

    ``channels``: C_l of each captured map in order; ``forward(maps, temb)`` takes the per-layer maps
    already resized to S x S (list of (B, C_l, S, S)) or their concatenation (B, ΣC_l, S, S).
    """

    def __init__(
        self,
        channels: Sequence[int],
        projection_dim: int = 384,
        bottleneck: int | None = None,
        emb_channels: int = 1280,
        groups: int = 32,
        use_time: bool = True,
    ) -> None:
        super().__init__()
        b = projection_dim // 4 if bottleneck is None else bottleneck
        self.channels = list(channels)
        self.use_time = use_time
        self.blocks = nn.ModuleList(
            BottleneckBlock(c, projection_dim, b, emb_channels, groups) for c in channels
        )
        self.mixing = nn.Parameter(torch.ones(len(self.channels)))

    def forward(self, maps: Tensor | Sequence[Tensor], temb: Tensor | None = None) -> Tensor:
        if isinstance(maps, Tensor):
            if maps.shape[1] != sum(self.channels):
                raise DirectDragError(
                    f"readout head expects {sum(self.channels)} channels, got {maps.shape[1]}"
                )
            maps = torch.split(maps, self.channels, dim=1)
        if len(maps) != len(self.blocks):
            raise DirectDragError(f"readout head expects {len(self.blocks)} feature maps, got {len(maps)}")
        weights = torch.softmax(self.mixing, dim=0)
        t = temb if self.use_time else None
        return sum(w * block(m, t) for w, block, m in zip(weights, self.blocks, maps, strict=True))


def rg_loss(a_edit: Tensor, a_ref: Tensor, z_range: float | Tensor, weight: float = 350.0) -> Tensor:
    """``weight * range^2 * mean_{y,x}(1 - cos_c(a_edit, a_ref))`` (0-dim); heads' outputs (B, P, S, S).

    ``1 - cos`` is computed as ``|â - b̂|^2 / 2`` with per-pixel unit vectors (equal mathematically), so
    identical inputs give exactly 0 and the value lies in ``[0, 2 weight range^2]``. ``a_ref`` is
    detached; ``z_range`` (z_max - z_min) is taken as a detached number.
    """
    r = float(z_range)
    diff = F.normalize(a_edit, dim=1, eps=1e-8) - F.normalize(a_ref.detach(), dim=1, eps=1e-8)
    return weight * r * r * (0.5 * diff.square().sum(1)).mean()
