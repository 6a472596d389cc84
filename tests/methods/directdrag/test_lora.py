"""Per-image LoRA with PEFT: spec §5 oracle 6 (identity at initialisation; after k steps only LoRA
parameters changed) and the adapter placement (every attention projection, self and cross)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from tests.methods.directdrag import null_context, tiny_unet
from visionkit.methods.directdrag import DirectDragError, make_scheduler
from visionkit.methods.directdrag.lora import add_lora, lora_parameters, train_lora

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_lora_identity_at_init_and_only_lora_changes() -> None:
    unet = tiny_unet()
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base_out = unet(z, 741, encoder_hidden_states=null_context()).sample
    base = {n: p.detach().clone() for n, p in unet.named_parameters()}
    params = add_lora(unet, rank=4)
    # 4 transformer blocks x 2 attentions x 4 projections x (A, B)
    assert len(params) == 4 * 2 * 4 * 2 and all(p.requires_grad for p in params)
    assert all(not p.requires_grad for n, p in unet.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        lora_out = unet(z, 741, encoder_hidden_states=null_context()).sample
    assert (lora_out - base_out).abs().max() == 0.0  # up-projection = 0: the same UNet
    before = {n: p.detach().clone() for n, p in unet.named_parameters() if "lora_" in n}
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    losses = train_lora(unet, lambda g: latents, null_context(), make_scheduler(50), steps=3)
    assert len(losses) == 3 and all(loss == loss for loss in losses)
    for n, p in unet.named_parameters():
        if "lora_" in n:
            continue
        key = n.replace(".base_layer", "")
        assert torch.equal(p, base[key]), n
    changed = [n for n, p in unet.named_parameters() if "lora_B" in n and not torch.equal(p, before[n])]
    assert len(changed) == 32
    with torch.no_grad():
        trained_out = unet(z, 741, encoder_hidden_states=null_context()).sample
    assert (trained_out - base_out).abs().max() > 1e-6


def test_lora_errors() -> None:
    unet = tiny_unet()
    with pytest.raises(DirectDragError) as info:
        train_lora(unet, lambda g: torch.zeros(1, 4, 16, 16), null_context(), make_scheduler(50), steps=1)
    assert "call add_lora first" in error_of(info)
    with pytest.raises(DirectDragError):
        add_lora(unet, rank=0)
    assert lora_parameters(unet) == []
