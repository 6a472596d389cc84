"""HST: Hierarchical Side-Tuning (Lin et al., 2023) for timm ViTs and DeiTs, in pure torch.

``HST`` puts the hierarchical side network (``HSTSideNetwork``: meta tokens, T-Bridges, four side
stages at strides 4, 8, 16, 32, BatchNorm1d + Linear head) on a frozen ViT; ``HST.pyramid`` gives
the four side feature maps for dense-prediction heads, and ``HSTSegmenter`` puts an FPN-lite decoder on them.
``HSTTask`` and ``HSTSegmentationTask`` are the Lightning tasks.
"""

from visionkit.methods.hst.decoder import HSTSegmenter, PyramidDecoder
from visionkit.methods.hst.errors import HSTError
from visionkit.methods.hst.features import HSTFeatures
from visionkit.methods.hst.model import HST, default_block_indices, stage_layers
from visionkit.methods.hst.side import HSTSideNetwork
from visionkit.methods.hst.stages import (
    OFFICIAL_HEADS,
    OFFICIAL_WIDTHS,
    STRIDES,
    SideBlock,
    bridge_tokens,
    resize_tokens,
    side_widths,
)
from visionkit.methods.hst.task import HSTSegmentationTask, HSTTask

__all__ = [
    "HST",
    "OFFICIAL_HEADS",
    "OFFICIAL_WIDTHS",
    "STRIDES",
    "HSTError",
    "HSTFeatures",
    "HSTSegmentationTask",
    "HSTSegmenter",
    "HSTTask",
    "PyramidDecoder",
    "HSTSideNetwork",
    "SideBlock",
    "bridge_tokens",
    "resize_tokens",
    "default_block_indices",
    "side_widths",
    "stage_layers",
]
