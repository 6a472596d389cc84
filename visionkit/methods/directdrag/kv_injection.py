"""Mutual self-attention (MasaCtrl-style KV injection) as a diffusers attention processor (spec §2.8, §6.5).

The UNet runs on a batch ``[z_ref (B), z_edit (B)]``. In a selected self-attention (``attn1``) layer
the reference half attends to itself and the edit half's queries attend to the **reference** keys and
values: ``softmax(q_e k_ref^T / sqrt(d)) v_ref``. q, k and v go through ``attn.to_q/to_k/to_v``, so
PEFT LoRA deltas on those layers stay active. Cross-attention (``attn2``) is never touched.

Layers are chosen by **execution order** (down -> mid -> up) of the transformer blocks' ``attn1``,
index ``>= start_layer`` (SD1.5 has 16; ``>= 10`` is ``up_blocks.2`` and ``up_blocks.3``). diffusers'
``attn_processors`` dict is in registration order (down, up, mid), so names are sorted explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn

from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["MutualSelfAttentionProcessor", "install_kv_injection", "kv_injection", "self_attention_names"]

_RANK = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


def _order(name: str) -> tuple:
    head = name.split(".", 1)[0]
    return (_RANK.get(head, 3), *(int(tok) for tok in name.split(".") if tok.isdigit()))


def self_attention_names(unet: nn.Module) -> list[str]:
    """Module names of the transformer blocks' self-attentions (``...attn1``) in execution order."""
    names = [n for n, m in unet.named_modules() if isinstance(m, Attention) and n.endswith("attn1")]
    return sorted(names, key=_order)


class MutualSelfAttentionProcessor:
    """Self-attention where the second half of the batch (edit) uses the first half's (reference) K and V.

    ``hidden_states``: (2B, N, C) or (2B, C, H, W); returns the same shape. Only for self-attention:
    raises when called with ``encoder_hidden_states`` or an odd batch.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        *args,
        **kwargs,
    ) -> Tensor:
        if encoder_hidden_states is not None:
            raise DirectDragError("KV injection applies to self-attention (attn1) only, got cross-attention")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if batch % 2:
            raise DirectDragError(f"KV injection needs a [reference, edit] batch of even size, got {batch}")
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        half = batch // 2
        key = torch.cat([key[:half], key[:half]])  # edit queries see the reference keys and values
        value = torch.cat([value[:half], value[:half]])

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_kv_injection(unet: nn.Module, start_layer: int) -> dict:
    """Put :class:`MutualSelfAttentionProcessor` on every ``attn1`` with execution index >= ``start_layer``.

    Returns the previous processors (``unet.attn_processors``) to restore with ``unet.set_attn_processor``.
    """
    names = self_attention_names(unet)
    if not 0 <= start_layer < len(names):
        raise DirectDragError(
            f"kv start_layer must be in [0, {len(names) - 1}] for this UNet, got {start_layer}"
        )
    previous = dict(unet.attn_processors)
    chosen = {f"{n}.processor" for n in names[start_layer:]}
    proc = MutualSelfAttentionProcessor()
    unet.set_attn_processor({k: (proc if k in chosen else v) for k, v in previous.items()})
    return previous


@contextlib.contextmanager
def kv_injection(unet: nn.Module, start_layer: int) -> Iterator[None]:
    """Context manager: KV injection on ``attn1`` layers >= ``start_layer``, the old processors restored after."""
    previous = install_kv_injection(unet, start_layer)
    try:
        yield
    finally:
        unet.set_attn_processor(previous)
