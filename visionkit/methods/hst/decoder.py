"""Dense prediction on HST's side pyramid: an FPN-lite decoder and the ``HSTSegmenter`` that composes them.

The paper puts UperNet (segmentation) or Mask R-CNN's FPN (detection) on the four side maps; visionkit ships
the light version of that idea. With ``P_s`` the side map of stage ``s`` (stride ``4 * 2^s``, width ``C_s``)::

    L_s = Conv1x1(P_s) -> width F                       lateral projections
    T_4 = L_4,  T_s = L_s + Up2(T_{s+1})                top-down pathway
    S_s = ReLU(BN(Conv3x3(T_s)))                        smoothing
    scores = Conv1x1(sum_s Up(S_s -> stride 4))         (B, K, H/4, W/4)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.hst.errors import HSTError
from visionkit.methods.hst.model import HST

__all__ = ["HSTSegmenter", "PyramidDecoder"]


class PyramidDecoder(nn.Module):
    """FPN-lite: feature maps of decreasing resolution -> class scores at the finest map's resolution.

    Args:
        in_widths: channels of each input map, finest first.
        num_classes: output channels ``K`` (background included).
        width: the decoder's width ``F``.
    """

    def __init__(self, in_widths: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        if num_classes < 1 or width < 1 or not in_widths:
            raise HSTError(f"PyramidDecoder needs input widths, num_classes >= 1 and width >= 1, "
                           f"got {list(in_widths)}, {num_classes}, {width}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_widths)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for _ in in_widths
        )
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)  # small initial logits (as mmseg's conv_seg)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        """``[(B, C_s, H_s, W_s)]`` finest first -> ``(B, K, H_0, W_0)``."""
        if len(maps) != len(self.lateral):
            raise HSTError(f"PyramidDecoder was built for {len(self.lateral)} maps, got {len(maps)}")
        top = self.lateral[-1](maps[-1])
        fused = self.smooth[-1](top)
        size = maps[0].shape[-2:]
        fused = _up(fused, size)
        for s in range(len(maps) - 2, -1, -1):
            top = self.lateral[s](maps[s]) + _up(top, maps[s].shape[-2:])
            fused = fused + _up(self.smooth[s](top), size)
        return self.classifier(fused)


def _up(x: Tensor, size) -> Tensor:
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class HSTSegmenter(nn.Module):
    """HST's side pyramid (no classification head) + :class:`PyramidDecoder`: images -> ``(B, K, H/4, W/4)``.

    Trainable: HST's trainable parts (meta tokens, ViT LayerNorms, side network) and the decoder.

    Args:
        hst: an :class:`HST` built with ``num_classes=0``.
        num_classes: ``K`` output channels (background included).
        width: decoder width.
    """

    def __init__(self, hst: HST, num_classes: int, width: int = 64) -> None:
        super().__init__()
        if hst.side_network.head_norm is not None:
            raise HSTError("HSTSegmenter needs an HST built with num_classes=0 (its classification head is unused)")
        self.hst = hst
        self.decoder = PyramidDecoder(hst.widths, num_classes, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.hst.pyramid(x))
