"""UNet feature capture by forward hooks (spec §2.0, §2.7, §6.3-6.4): F and φ from one UNet call.

* **F** (motion supervision and tracking): entry ``feature_idx`` of ``[mid_block, up_blocks[0], ...]``
  (the official index 3 = ``up_blocks[2]`` of SD1.5, 640 ch at H/8); default ``len(up_blocks) - 1``,
  the second-to-last up block. :func:`motion_features` resizes it bilinearly to the supervision grid.
* **φ** (readout guidance): the residual-branch output (``conv2``, before the skip add and before
  ``output_scale_factor``) of every ResNet block of the decoder, in execution order;
  :func:`readout_stack` resizes each to a square ``size`` grid and concatenates them (SD1.5: 12 maps,
  10560 channels at 64x64).

Both come from the same forward pass, so gradients reach the latent through either. The store is
cleared at the start of every UNet call (a pre-hook on the UNet), so it only ever holds one pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["FeatureStore", "capture_features", "default_feature_idx", "motion_features", "readout_stack"]


def default_feature_idx(unet: nn.Module) -> int:
    """``len(up_blocks) - 1``: the second-to-last up block (3 for SD1.5)."""
    return len(unet.up_blocks) - 1


class FeatureStore:
    """What one UNet call left: ``feature`` (B, C, h, w) or None, ``readout`` (list of (B, C_l, h_l, w_l))."""

    def __init__(self) -> None:
        self.feature: Tensor | None = None
        self.readout: list[Tensor] = []

    def clear(self) -> None:
        self.feature = None
        self.readout = []


@contextlib.contextmanager
def capture_features(
    unet: nn.Module, feature_idx: int | None = None, readout: bool = False
) -> Iterator[FeatureStore]:
    """Hooks on ``unet`` while the context is open; yields the :class:`FeatureStore` each call refills."""
    idx = default_feature_idx(unet) if feature_idx is None else feature_idx
    blocks = [unet.mid_block, *unet.up_blocks]
    if not 0 <= idx < len(blocks):
        raise DirectDragError(f"feature_idx must be in [0, {len(blocks) - 1}] for this UNet, got {idx}")
    store = FeatureStore()
    handles: list[RemovableHandle] = [unet.register_forward_pre_hook(lambda mod, args: store.clear())]

    def keep_feature(mod: nn.Module, args: tuple, out: Tensor | tuple) -> None:
        store.feature = out[0] if isinstance(out, tuple) else out

    handles.append(blocks[idx].register_forward_hook(keep_feature))
    if readout:
        for block in unet.up_blocks:
            for resnet in block.resnets:
                handles.append(
                    resnet.conv2.register_forward_hook(lambda mod, args, out: store.readout.append(out))
                )
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()
        store.clear()


def motion_features(feature: Tensor, grid: tuple[int, int]) -> Tensor:
    """F resized bilinearly (``align_corners=False``) to the supervision grid: (B, C, Hs, Ws), float32."""
    return F.interpolate(feature.float(), size=grid, mode="bilinear", align_corners=False)


def readout_stack(maps: list[Tensor], size: int) -> Tensor:
    """φ: each map resized bilinearly to a square ``size x size`` grid (whatever the aspect), concatenated.

    Returns (B, ΣC_l, size, size), float32.
    """
    if not maps:
        raise DirectDragError(
            "no readout features were captured; call the UNet inside capture_features(readout=True)"
        )
    resized = [
        F.interpolate(m.float(), size=(size, size), mode="bilinear", align_corners=False) for m in maps
    ]
    return torch.cat(resized, dim=1)
