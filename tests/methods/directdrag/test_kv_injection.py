"""Mutual self-attention / KV injection: spec §5 oracle 5 (identical branches give plain self-attention;
the reference branch never changes), the edit branch's softmax(q_e k_ref^T) v_ref written out, layer
selection by execution order (spec §6.5) and restoring the processors."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from tests.helpers import error_of
from tests.methods.directdrag import null_context, tiny_unet
from visionkit.methods.directdrag import (
    DirectDragError,
    MutualSelfAttentionProcessor,
    install_kv_injection,
    kv_injection,
    self_attention_names,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def latents(seed: int) -> torch.Tensor:
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def run(unet, z: torch.Tensor, t: int = 601) -> torch.Tensor:
    with torch.no_grad():
        return unet(z, t, encoder_hidden_states=null_context(z.shape[0])).sample


def test_self_attention_names_follow_execution_order(unet) -> None:
    """Sorted names (down -> mid -> up) equal the order in which a dry run calls the attn1 modules."""
    names = self_attention_names(unet)
    assert names == [
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1",
        "mid_block.attentions.0.transformer_blocks.0.attn1",
        "up_blocks.0.attentions.0.transformer_blocks.0.attn1",
        "up_blocks.0.attentions.1.transformer_blocks.0.attn1",
    ]
    registration = [
        k.removesuffix(".processor") for k in unet.attn_processors if k.endswith("attn1.processor")
    ]
    assert registration != names  # diffusers' dict is down, up, mid: not execution order
    called: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, n=n: called.append(n))
        for n, m in unet.named_modules()
        if n.endswith("attn1")
    ]
    run(unet, latents(0))
    for hook in hooks:
        hook.remove()
    assert called == names


def test_identical_branches_equal_plain_self_attention(unet) -> None:
    """Oracle 5: z_ref == z_edit -> both outputs equal a plain UNet pass (1e-6), injection on every layer."""
    z = latents(1)
    plain = run(unet, torch.cat([z, z]))  # same batch composition as the injected pass
    with kv_injection(unet, 0):
        both = run(unet, torch.cat([z, z]))
    assert (both[0] - plain[0]).abs().max() < 1e-6
    assert (both[1] - plain[0]).abs().max() < 1e-6
    # against a batch-1 pass only batching noise remains (2.5e-6 measured; 1e-5 bound)
    assert (both[1] - run(unet, z)[0]).abs().max() < 1e-5


def test_reference_branch_unchanged_and_edit_branch_injected(unet) -> None:
    """Oracle 5 converse: the reference output equals its plain pass for any z_edit; the edit output changes."""
    z_ref, z_edit = latents(2), latents(3)
    plain = run(unet, torch.cat([z_ref, z_edit]))
    with kv_injection(unet, 0):
        injected = run(unet, torch.cat([z_ref, z_edit]))
    assert (injected[0] - plain[0]).abs().max() < 1e-6
    assert (injected[1] - plain[1]).abs().mean() > 1e-3
    # the processors are restored: the plain result comes back
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert (run(unet, torch.cat([z_ref, z_edit])) - plain).abs().max() < 1e-6


def test_start_layer_selects_attn1_by_execution_index(unet) -> None:
    previous = install_kv_injection(unet, 2)
    try:
        procs = unet.attn_processors
        injected = sorted(k for k, p in procs.items() if isinstance(p, MutualSelfAttentionProcessor))
        assert injected == sorted(f"{n}.processor" for n in self_attention_names(unet)[2:])
        assert not any(isinstance(p, MutualSelfAttentionProcessor) for k, p in procs.items() if "attn2" in k)
    finally:
        unet.set_attn_processor(previous)
    with pytest.raises(DirectDragError) as info:
        install_kv_injection(unet, 4)
    assert "start_layer must be in [0, 3]" in error_of(info)


def test_processor_is_softmax_of_edit_queries_against_reference_keys() -> None:
    """On one Attention layer: out_edit = to_out(softmax(q_e k_ref^T / sqrt(d)) v_ref), out_ref = plain."""
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        out = MutualSelfAttentionProcessor()(attn, x)
        plain = AttnProcessor2_0()(attn, x)
        q = attn.to_q(x[1]).view(5, 2, 8).transpose(0, 1)
        k = attn.to_k(x[0]).view(5, 2, 8).transpose(0, 1)
        v = attn.to_v(x[0]).view(5, 2, 8).transpose(0, 1)
        w = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1)
        expected = attn.to_out[0]((w @ v).transpose(0, 1).reshape(5, 16))
    assert torch.allclose(out[1], expected, atol=1e-6)
    assert torch.allclose(out[0], plain[0], atol=1e-6)
    assert (out[1] - plain[1]).abs().max() > 1e-3
    with pytest.raises(DirectDragError):
        MutualSelfAttentionProcessor()(attn, x[:1])
    with pytest.raises(DirectDragError):
        MutualSelfAttentionProcessor()(attn, x, encoder_hidden_states=x)


def test_injection_keeps_lora_deltas_in_q_k_v() -> None:
    """With a (non-zero) PEFT LoRA, identical branches still equal the plain LoRA'd pass, which differs
    from the base UNet: q, k and v go through the adapted projections."""
    from visionkit.methods.directdrag.lora import add_lora

    unet = tiny_unet()
    z = latents(4)
    base = run(unet, torch.cat([z, z]))
    add_lora(unet, rank=2)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name and "attn1" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    plain = run(unet, torch.cat([z, z]))
    with kv_injection(unet, 0):
        injected = run(unet, torch.cat([z, z]))
    assert (plain - base).abs().max() > 1e-3
    assert (injected - plain).abs().max() < 1e-6
