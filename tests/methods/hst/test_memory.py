"""HST oracle 9 (spec section 5 and A.1): saved-for-backward bytes of one training step, next to full
fine-tuning and LoRA on the same ViT, fp32, explicit (non-fused) attention, drop-path 0, train mode.

Official HST backpropagates through the whole frozen ViT into the meta tokens: it keeps at least as
much as LoRA (spec: 0.84x full FT at 32 px, 1.2-1.8x at 224 px). The detached variant keeps the ViT
out of autograd (spec: 0.17-0.23x at 32 px). The side blocks keep less than plain modules would
(standardised LayerNorm outputs with the affines folded into the next Linear, GELU recomputed in
backward): same values and gradients as the official forward written out, checked here in float64.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from tests.methods.hst.test_model import literal_attention, official_forward, tiny_vit
from visionkit.memory import SavedTensorMeter, measure_training_step
from visionkit.methods.hst import HST, SideBlock
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
    Measured here (B=16): LoRA 0.663, HST 0.741, detached 0.138; visionkit bridges each ViT block output
    once instead of its meta and patch slices apart, which keeps one copy less per layer, and its side
    blocks keep 6C instead of 14C numbers per token (0.788 and 0.185 with plain side blocks)."""
    vit = {"embed_dim": 96, "depth": 4, "num_heads": 3}
    x = torch.rand(16, 3, 32, 32)
    torch.manual_seed(0)
    full = activation_bytes(tiny_vit(**vit), x)
    lora = activation_bytes(LoRATuner(tiny_vit(**vit), r=8, trainable=["head"]), x)
    hst = activation_bytes(HST(tiny_vit(**vit), num_classes=5), x)
    detached = activation_bytes(HST(tiny_vit(**vit), num_classes=5, detached=True), x)
    ratios = {"lora": lora / full, "hst": hst / full, "detached": detached / full}
    assert hst >= lora, ratios
    assert ratios["hst"] >= 0.70, ratios  # plain side blocks keep 0.788, visionkit's lean ones 0.741 (spec: 0.84)
    assert ratios["detached"] <= 0.30, ratios


def test_official_hst_exceeds_full_finetuning_at_224px():
    """ViT-Ti shape (D=192, depth 12, patch 16) at 224 px: the 56x56-token stage 1 dominates (spec 1.62x with
    bridging first, 1.84x with the official order; measured here 1.159x, 1.388x with resize_first, and
    1.575x, 1.798x with plain side blocks)."""
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


@pytest.mark.parametrize("detached", [False, True])
def test_lean_side_network_has_the_gradients_of_the_official_forward(detached):
    """float64, train mode: logits and every trainable gradient of HST equal those of the official forward
    written out with the plain modules (LayerNorm, Linear, GELU one after the other), to 1e-12 of the largest
    gradient (measured 3e-15; a backward pass reduced in float32 gives 1e-9; structurally zero gradients,
    e.g. the key biases', are rounding noise on both sides)."""
    model = HST(tiny_vit(), num_classes=5, detached=detached).double().train()
    with torch.no_grad():  # LayerNorm affines away from 1 / 0, so that folding them is really exercised
        for name, p in model.side_network.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    results = []
    for forward in (model, lambda images: official_forward(model, images)):
        logits = forward(x)
        grads = torch.autograd.grad(nn.functional.cross_entropy(logits, y), list(params.values()))
        results.append((logits.detach(), dict(zip(params, grads, strict=True))))
    (lean_logits, lean), (ref_logits, ref) = results
    torch.testing.assert_close(lean_logits, ref_logits, rtol=1e-10, atol=1e-12)
    scale = max(float(g.abs().max()) for g in ref.values())
    errors = {n: float((lean[n] - ref[n]).abs().max()) / scale for n in ref}
    assert max(errors.values()) < 1e-12, sorted(errors.items(), key=lambda kv: -kv[1])[:3]


def plain_side_block(block: SideBlock, x: torch.Tensor, kv: torch.Tensor, vit: torch.Tensor) -> torch.Tensor:
    """The side block with its modules called one after the other, attention one head at a time (official code)."""
    x = x + literal_attention(block.attn, block.norm1(x), kv)
    x = x + vit
    return x + block.mlp(block.norm2(x))


def test_side_block_keeps_6c_numbers_per_token_instead_of_14c():
    """C=32, 2 heads, K=2 keys, 2 x 1024 tokens: per token the lean block keeps 6C + hK = 196 numbers
    (ratio 196 / 452 = 0.434 to the plain modules' 14C + hK); weight-sized extras (the folded q and fc1
    weights, 5 C^2), the per-image (C, hK) attention maps and the key/value tensors are a few percent on top."""
    block = SideBlock(32, 2).train()
    x, kv, vit = torch.randn(2, 1024, 32), torch.randn(2, 2, 32), torch.randn(2, 1024, 32)
    kept = {}
    for name, forward in (("lean", block), ("plain", lambda *a: plain_side_block(block, *a))):
        with SavedTensorMeter(block) as meter:
            out = forward(x.requires_grad_(), kv.requires_grad_(), vit.requires_grad_())
        out.sum().backward()
        kept[name] = meter.bytes
    per_token = {name: b / (2 * 1024 * 4) for name, b in kept.items()}  # float32 numbers per token
    assert 196 <= per_token["lean"] < 206, per_token
    assert 452 <= per_token["plain"] < 462, per_token


def test_lean_side_block_under_bfloat16_autocast():
    """The custom backward passes follow autocast: finite float32 parameter gradients within bf16 rounding
    (5e-2 of the largest) of the float32 ones."""
    block = SideBlock(32, 2).train()
    x, kv, vit = torch.randn(2, 64, 32), torch.randn(2, 2, 32), torch.randn(2, 64, 32)
    grads = []
    for autocast in (False, True):
        block.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = block(x, kv, vit)
        out.float().square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in block.named_parameters()})
    full, half = grads
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in half.values())
    scale = max(float(g.abs().max()) for g in full.values())
    assert max(float((half[n] - full[n]).abs().max()) for n in full) < 5e-2 * scale
