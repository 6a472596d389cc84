"""Hidden states ``h_0..h_L`` of a timm ViT or an open_clip tower, read in one pass without autograd.

``h_0`` is the token embedding (after position embedding and pre-norm), ``h_l`` the output of
block ``l`` (before the final norm), each ``(B, N, D)`` with the prefix tokens first. Side
networks that read every layer of a frozen backbone (UniPT, ...) take a :class:`HiddenStates`.
Built on :func:`visionkit.backbones.intermediates.get_intermediates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from visionkit.backbones.intermediates import Intermediates, get_intermediates, open_clip_text_owner
from visionkit.errors import VisionkitError

__all__ = ["HiddenStates", "HiddenStatesError", "open_clip_hidden_states", "text_positions", "vit_hidden_states"]


class HiddenStatesError(VisionkitError, ValueError):
    """A backbone whose hidden states cannot be read (one line, naming it).

    ``reason`` is the message without its subject, for a caller that names itself instead
    (``f"UniPT {err.reason}"``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"the hidden-state reader {reason}")
        self.reason = reason


@dataclass
class HiddenStates:
    """The hidden states of one pass (computed without autograd).

    Attributes:
        states: ``h_0..h_L``, each ``(B, N, D)`` with the prefix tokens first.
        pooled: the backbone's pooled output ``(B, E)`` (timm pre-logits, open_clip embedding).
        mask: ``(B, N)`` real-token mask (text), or ``None``.
        position: ``(B,)`` index of the pooled token (class token, end-of-text token), or ``None``
            when the backbone pools by averaging.
        pool_mask: with ``position=None``: ``(B, N)``, 1 for the tokens the backbone's pooling
            averages (timm: the tokens after the prefix tokens, unless ``pool_include_prefix``);
            ``None``: every real token.
    """

    states: list[Tensor]
    pooled: Tensor
    mask: Tensor | None = None
    position: Tensor | None = None
    pool_mask: Tensor | None = None


def _with_prefix(features: Tensor, prefix: Tensor | None) -> Tensor:
    return features if prefix is None else torch.cat([prefix, features], dim=1)


def _read_image_tokens(model: nn.Module, x: Tensor, what: str) -> Intermediates:
    """Embedding + every block output (NLC, prefix tokens apart) in one pass, or a one-line HiddenStatesError."""
    try:
        return get_intermediates(model, x, indices=None, output_fmt="NLC", prefix_tokens=True, include_embedding=True)
    except (ValueError, AssertionError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HiddenStatesError(f"cannot read {what}: {first}") from err


def _token_states(inter: Intermediates) -> list[Tensor]:
    """``h_0..h_L`` with the prefix tokens put back in front: ``[embedding, block_1, ..., block_L]``."""
    prefix = inter.prefix or [None] * len(inter.features)
    states = [_with_prefix(inter.embedding, inter.embedding_prefix)]
    return states + [_with_prefix(f, p) for f, p in zip(inter.features, prefix, strict=True)]


def _describe(backbone: nn.Module) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return f"'{cfg['architecture']}'" if cfg.get("architecture") else type(backbone).__name__


def _pooled_tokens(state: Tensor, skip: int) -> Tensor | None:
    """``(B, N)`` mask of the tokens after the first ``skip`` (prefix) tokens; ``None`` when ``skip == 0``."""
    if skip == 0:
        return None
    b, n = state.shape[:2]
    return (torch.arange(n, device=state.device) >= skip).to(state.dtype).expand(b, n)


def vit_hidden_states(backbone: nn.Module, x: Tensor) -> HiddenStates:
    """Embedding + every block output of a timm ViT/DeiT (pre final norm), and its pre-logits.

    Args:
        backbone: a timm ViT-style model.
        x: images ``(B, C, H, W)``.

    Raises:
        HiddenStatesError: ``backbone`` is not a token model whose blocks can be read (e.g. a CNN).
    """
    if not hasattr(backbone, "num_prefix_tokens") or not hasattr(backbone, "forward_head"):
        raise HiddenStatesError(
            f"needs a timm ViT-style backbone whose block token outputs can be read "
            f"(VisionTransformer, DeiT, ...); {_describe(backbone)} has no token layers"
        )
    inter = _read_image_tokens(backbone, x, f"the intermediate layers of {_describe(backbone)}")
    states = _token_states(inter)
    pooled = backbone.forward_head(inter.final, pre_logits=True)
    has_cls = bool(getattr(backbone, "cls_token", None) is not None) and getattr(backbone, "global_pool", "token") == "token"
    if has_cls:
        return HiddenStates(states, pooled, None, torch.zeros(len(x), dtype=torch.long, device=x.device))
    skip = 0 if getattr(backbone, "pool_include_prefix", False) else int(backbone.num_prefix_tokens)
    return HiddenStates(states, pooled, None, None, _pooled_tokens(states[0], skip))


def text_positions(model: nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the pooled token ``(B,)`` and the real-token mask ``(B, L)`` of open_clip token ids ``(B, L)``.

    Supports the pooling types of open_clip's text towers: ``argmax`` (CLIP: the end-of-text
    token has the largest id), ``last`` and ``first``.

    Raises:
        HiddenStatesError: a pooling type without a single pooled token (e.g. ``mean``).
    """
    owner = open_clip_text_owner(model)
    pool = getattr(owner, "text_pool_type", "argmax")
    length = tokens.shape[1]
    if pool == "argmax":
        position = tokens.argmax(dim=-1)
    elif pool == "last":
        pad = getattr(owner, "pad_id", 0)
        position = ((tokens != pad).long().cumsum(-1).argmax(-1)) if pad is not None else torch.full_like(tokens[:, 0], length - 1)
    elif pool == "first":
        position = torch.zeros_like(tokens[:, 0])
    else:
        raise HiddenStatesError(f"reads open_clip text towers that pool one token (argmax/last/first), not '{pool}'")
    mask = torch.arange(length, device=tokens.device).unsqueeze(0) <= position.unsqueeze(1)
    return position, mask


def open_clip_hidden_states(model: nn.Module, x: Tensor, tower: Literal["image", "text"]) -> HiddenStates:
    """Hidden states of an open_clip tower and its (unnormalised) output embedding.

    Image (``x``: ``(B, 3, H, W)``): ``ln_pre`` output + every residual block output, class token
    first. Text (``x``: token ids ``(B, L)``): the token embedding (+ positions) + every residual
    block output; ``mask`` covers the tokens up to the pooled one (causal attention makes later
    tokens irrelevant to it).

    Raises:
        HiddenStatesError: the tower has no readable transformer layers (e.g. a ModifiedResNet
            image tower), or a text tower with an appended class token (CoCa).
    """
    if tower == "image":
        inter = _read_image_tokens(model, x, f"the image tower of {type(model).__name__}")
        states = _token_states(inter)
        visual = model.visual
        has_cls = getattr(visual, "class_embedding", None) is not None and getattr(visual, "pool_type", "tok") == "tok"
        if has_cls:
            return HiddenStates(states, inter.final, None, torch.zeros(len(x), dtype=torch.long, device=x.device))
        skip = 1 if getattr(visual, "class_embedding", None) is not None and getattr(visual, "pool_type", "") == "avg" else 0
        return HiddenStates(states, inter.final, None, None, _pooled_tokens(states[0], skip))
    owner = open_clip_text_owner(model)
    if getattr(owner, "cls_emb", None) is not None:
        raise HiddenStatesError("does not read open_clip text towers with an appended class token (CoCa)")
    inter = get_intermediates(model, x, tower="text", output_fmt="NLC", prefix_tokens=False)
    embedding = owner.token_embedding(x) + owner.positional_embedding[: x.shape[1]].to(owner.token_embedding.weight.dtype)
    position, mask = text_positions(model, x)
    return HiddenStates([embedding, *inter.features], inter.final, mask, position)
