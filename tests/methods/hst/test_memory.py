"""HST oracle 9 (spec section 5 and A.1): saved-for-backward bytes of one training step, next to full
fine-tuning and LoRA on the same ViT, fp32, explicit (non-fused) attention, drop-path 0, train mode.

Official HST backpropagates through the whole frozen ViT into the meta tokens: it keeps at least as
much as LoRA (spec: 0.84x full FT at 32 px, 1.2-1.8x at 224 px). The detached variant keeps the ViT
out of autograd (spec: 0.17-0.23x at 32 px).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from tests.methods.hst.test_model import tiny_vit
from visionkit.memory import measure_training_step
from visionkit.methods.hst import HST
from visionkit.tuners.lora import LoRATuner

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.fixture(autouse=True)
def _explicit_attention() -> Iterator[None]:
    import timm.layers

    timm.layers.set_fused_attn(False)
    yield
    timm.layers.set_fused_attn(True)


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    y = torch.arange(len(x)) % 5
    model.train()
    return measure_training_step(model, lambda: nn.functional.cross_entropy(model(x), y)).activation_bytes


def test_official_hst_keeps_at_least_as_much_as_lora_and_detached_far_less():
    """Spec row "tiny ViT D=96 depth 4, 32 px (p=4)": full 1.00, LoRA 0.66, HST 0.84, HST detached 0.23.
    Measured here (B=16 or 64 alike): LoRA 0.663, HST 0.788, detached 0.185; visionkit bridges each ViT
    block output once instead of its meta and patch slices apart, which keeps one copy less per layer."""
    vit = {"embed_dim": 96, "depth": 4, "num_heads": 3}
    x = torch.rand(16, 3, 32, 32)
    torch.manual_seed(0)
    full = activation_bytes(tiny_vit(**vit), x)
    lora = activation_bytes(LoRATuner(tiny_vit(**vit), r=8, trainable=["head"]), x)
    hst = activation_bytes(HST(tiny_vit(**vit), num_classes=5), x)
    detached = activation_bytes(HST(tiny_vit(**vit), num_classes=5, detached=True), x)
    ratios = {"lora": lora / full, "hst": hst / full, "detached": detached / full}
    assert hst >= lora, ratios
    assert ratios["hst"] >= 0.75, ratios
    assert ratios["detached"] <= 0.30, ratios


def test_official_hst_exceeds_full_finetuning_at_224px():
    """ViT-Ti shape (D=192, depth 12, patch 16) at 224 px: the 56x56-token stage 1 dominates (spec 1.62x with
    bridging first, 1.84x with the official order; measured here 1.575x, 1.798x with resize_first)."""
    vit = {"img_size": 224, "patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3}
    x = torch.rand(2, 3, 224, 224)
    torch.manual_seed(0)
    full = activation_bytes(tiny_vit(**vit), x)
    hst = activation_bytes(HST(tiny_vit(**vit), num_classes=5), x)
    assert hst / full > 1.0, hst / full


def test_bridging_first_saves_memory_when_upsampling():
    """64 px / patch 16: a 4x4 grid bridged to a 16x16 stage-1 map. Resizing first keeps a D-wide 16x16 map per
    layer for the bridge's backward; bridging first keeps the ViT tokens (already alive) instead."""
    vit = {"img_size": 64, "patch_size": 16, "embed_dim": 96, "depth": 4, "num_heads": 3}
    x = torch.rand(8, 3, 64, 64)
    measured = {}
    for order in ("resize_first", "auto"):
        torch.manual_seed(0)
        measured[order] = activation_bytes(HST(tiny_vit(**vit), num_classes=5, bridge_order=order), x)
    assert measured["auto"] < 0.95 * measured["resize_first"], measured
