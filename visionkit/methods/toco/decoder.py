"""LargeFOV segmentation decoder (spec §2.2; official ``model/decoder/conv_head.py``).

``conv3x3(dilation d, D -> E) -> ReLU -> conv3x3(dilation d, E -> E) -> ReLU -> conv1x1(E -> C+1)``,
all without bias, PyTorch default init (the official ``_init_weights`` is never called). Official:
``E = 512``, ``d = 5``; the CPU demo's "lite" variant uses ``E = 64``, ``d = 2``. The output keeps
the token grid: ``(B, C+1, h, w)`` at the patch stride.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LargeFOV"]


class LargeFOV(nn.Module):
    """``(B, in_dim, h, w) -> (B, out_channels, h, w)`` logits (``out_channels`` includes background)."""

    def __init__(self, in_dim: int, out_channels: int, hidden_dim: int = 512, dilation: int = 5) -> None:
        super().__init__()
        self.conv6 = nn.Conv2d(in_dim, hidden_dim, 3, padding=dilation, dilation=dilation, bias=False)
        self.conv7 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=dilation, dilation=dilation, bias=False)
        self.conv8 = nn.Conv2d(hidden_dim, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv6(x).relu()
        x = self.conv7(x).relu()
        return self.conv8(x)
