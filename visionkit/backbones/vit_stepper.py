"""Run a timm Vision Transformer block by block, with callbacks that may change the token sequence.

:class:`ViTStepper` reuses the model's own ``patch_embed``, ``_pos_embed`` (which prepends the
class/register tokens and resamples the position embedding for ``dynamic_img_size``),
``patch_drop``, ``norm_pre``, ``blocks`` and ``norm``, so with no callbacks it computes exactly
what ``model.forward_features`` computes. ``_pos_embed`` is private timm API: the default test
lane checks the equality, so a timm upgrade that changes it fails loudly.

Callbacks receive ``(i, x)`` with ``x`` of shape ``(B, N, C)`` and return the (possibly longer
or shorter) sequence to use, or ``None`` to keep ``x``. HST, for example, prepends meta tokens
before each block and strips them after it (see :func:`insert_tokens` / :func:`remove_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["BlockCallback", "ViTStepper", "insert_tokens", "remove_tokens"]

#: ``callback(block_index, tokens (B, N, C)) -> tokens or None (unchanged)``
BlockCallback = Callable[[int, Tensor], "Tensor | None"]

_REQUIRED = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "num_prefix_tokens")


def insert_tokens(x: Tensor, tokens: Tensor, position: int = 0) -> Tensor:
    """Insert ``tokens`` ``(B or 1, K, C)`` into ``x`` ``(B, N, C)`` before index ``position``.

    Returns:
        ``(B, N + K, C)``.
    """
    if tokens.ndim == 2:
        tokens = tokens.unsqueeze(0)
    tokens = tokens.expand(x.shape[0], -1, -1).to(dtype=x.dtype)
    return torch.cat([x[:, :position], tokens, x[:, position:]], dim=1)


def remove_tokens(x: Tensor, count: int, position: int = 0) -> tuple[Tensor, Tensor]:
    """Split ``count`` tokens starting at ``position`` out of ``x`` ``(B, N, C)``.

    Returns:
        ``(rest (B, N - count, C), removed (B, count, C))``.
    """
    removed = x[:, position : position + count]
    rest = torch.cat([x[:, :position], x[:, position + count :]], dim=1)
    return rest, removed


@dataclass
class StepperOutput:
    """Result of :meth:`ViTStepper.run`.

    Attributes:
        tokens: final sequence ``(B, P+N, C)``, after ``model.norm`` when ``norm=True``.
        grid: patch grid ``(H/p, W/p)`` of the input.
        num_prefix_tokens: class/register tokens in front of the patch tokens.
    """

    tokens: Tensor
    grid: tuple[int, int]
    num_prefix_tokens: int


class ViTStepper:
    """Block-by-block runner for a timm ``VisionTransformer``.

    Args:
        model: a timm ``VisionTransformer`` (or subclass / look-alike exposing ``patch_embed``,
            ``_pos_embed``, ``patch_drop``, ``norm_pre``, ``blocks``, ``norm``,
            ``num_prefix_tokens``); a visionkit tuner wrapping one is accepted too.

    Raises:
        TypeError: the model lacks one of those attributes.
    """

    def __init__(self, model: nn.Module) -> None:
        while "base_model" in model._modules and not hasattr(model, "_pos_embed"):
            model = model._modules["base_model"]
        missing = [name for name in _REQUIRED if not hasattr(model, name)]
        if missing:
            raise TypeError(f"ViTStepper needs a timm VisionTransformer; {type(model).__name__} lacks {missing}")
        self.model = model

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.model.blocks)

    @property
    def num_prefix_tokens(self) -> int:
        """Class + register tokens in front of the patch tokens."""
        return int(self.model.num_prefix_tokens)

    def grid(self, x: Tensor) -> tuple[int, int]:
        """Patch grid ``(H/p, W/p)`` for images ``x`` ``(B, C, H, W)``."""
        embed = self.model.patch_embed
        size = x.shape[-2:]
        if hasattr(embed, "dynamic_feat_size"):
            return tuple(int(v) for v in embed.dynamic_feat_size(size))
        return tuple(int(v) for v in embed.grid_size)

    def embed(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> tokens ``(B, P+N, C)`` (patch embed, prefix tokens, position, pre-norm)."""
        m = self.model
        x = m.patch_embed(x)
        x = m._pos_embed(x)
        x = m.patch_drop(x)
        return m.norm_pre(x)

    def block(self, i: int, x: Tensor) -> Tensor:
        """Run block ``i`` on ``(B, N, C)`` (with gradient checkpointing when the model has it on)."""
        blk = self.model.blocks[i]
        if getattr(self.model, "grad_checkpointing", False) and torch.is_grad_enabled():
            return checkpoint(blk, x, use_reentrant=False)
        return blk(x)

    def run(
        self,
        x: Tensor,
        pre_block: BlockCallback | None = None,
        post_block: BlockCallback | None = None,
        norm: bool = True,
        upto: int | None = None,
    ) -> StepperOutput:
        """Embed ``x`` and run the blocks, calling ``pre_block(i, tokens)`` and ``post_block(i, tokens)``.

        Args:
            x: images ``(B, C, H, W)``.
            pre_block: called before block ``i``; returns the sequence block ``i`` sees.
            post_block: called after block ``i``; returns the sequence passed on.
            norm: apply the model's final ``norm`` (as ``forward_features`` does).
            upto: run blocks ``0..upto`` only (inclusive); default all.
        """
        last = self.depth - 1 if upto is None else upto
        if not 0 <= last < self.depth:
            raise ValueError(f"upto={upto} is out of range for a ViT with {self.depth} blocks (valid: 0..{self.depth - 1})")
        grid = self.grid(x)
        tokens = self.embed(x)
        for i in range(last + 1):
            if pre_block is not None:
                tokens = _apply(pre_block, i, tokens)
            tokens = self.block(i, tokens)
            if post_block is not None:
                tokens = _apply(post_block, i, tokens)
        if norm:
            tokens = self.model.norm(tokens)
        return StepperOutput(tokens, grid, self.num_prefix_tokens)

    def forward_features(self, x: Tensor, pre_block: BlockCallback | None = None, post_block: BlockCallback | None = None) -> Tensor:
        """Like ``model.forward_features`` (``(B, P+N, C)``), with optional callbacks."""
        return self.run(x, pre_block, post_block).tokens

    def __call__(self, x: Tensor, pre_block: BlockCallback | None = None, post_block: BlockCallback | None = None) -> Tensor:
        """Logits ``(B, K)``: :meth:`forward_features` then the model's ``forward_head``."""
        return self.model.forward_head(self.forward_features(x, pre_block, post_block))


def _apply(callback: BlockCallback, i: int, tokens: Tensor) -> Tensor:
    out = callback(i, tokens)
    if out is None:
        return tokens
    if not isinstance(out, Tensor) or out.ndim != 3 or out.shape[0] != tokens.shape[0] or out.shape[2] != tokens.shape[2]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"block callback at block {i} returned {shape}; expected (B={tokens.shape[0]}, N', C={tokens.shape[2]})")
    return out
