"""The pieces of HST's hierarchical side network (official ``models/vit_custom_modules.py`` semantics).

Notation: side stage ``s = 1..4`` with width ``C_s`` and ``h_s`` heads works on an ``H_s x W_s`` map,
``H_s = H / 2^(s+1)`` (strides 4, 8, 16, 32 of the input ``H x W``); the frozen ViT has width ``D``
and an ``h x w`` patch grid.

* :class:`Stem` (stage 1) and :class:`Downsample` (stages 2-4) make the stage's side tokens.
* :class:`SideBlock` is the official ``M_Block``: cross-attention from the side tokens to the
  ``[meta; global]`` pair, the bridged ViT features added unscaled, then an MLP. Its LayerNorms keep
  only their standardised output (affine folded into the next Linear), its attention makes no queries
  (logits and output through per-image ``(C, h K)`` maps) and its MLP keeps only the GELU
  pre-activation, so a block keeps ``6 C + h K`` numbers per side token for backward instead of
  ``14 C + h K`` with plain modules; the maths (and the parameters) are the official ones.
* :func:`bridge_tokens` is the T-Bridge on a ViT layer's patch tokens, resized to the stage map
  (:func:`resize_tokens`), in either order (resize-then-bridge is the official one; bridging first
  is exact too, because bilinear weights sum to 1, and cheaper when the map is larger than the ViT grid).
* :class:`SideStage` holds a stage's embedding, blocks, final LayerNorm, T-Bridge and per-layer
  meta LayerNorms; :meth:`SideStage.bridge_layer` bridges one ViT block's meta slot and patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from visionkit.methods.hst.errors import HSTError
from visionkit.methods.hst.features import HSTFeatures

__all__ = [
    "OFFICIAL_HEADS",
    "OFFICIAL_WIDTHS",
    "STRIDES",
    "Downsample",
    "MetaCrossAttention",
    "SideBlock",
    "SideStage",
    "Stem",
    "bridge_tokens",
    "init_side_weights",
    "resize_tokens",
    "side_widths",
]

#: Official side widths ``C_1..C_4`` (``m_embed_dims``) and head counts (``m_c_num_heads``).
OFFICIAL_WIDTHS = (32, 48, 64, 72)
OFFICIAL_HEADS = (2, 4, 8, 12)
#: Stride of each side stage's map relative to the input.
STRIDES = (4, 8, 16, 32)
#: LayerNorm epsilon of the side blocks and stage norms (the ViT's ``norm_layer``); the stem,
#: downsampling and per-layer meta norms use plain ``nn.LayerNorm`` (1e-5), as in the official code.
BLOCK_EPS = 1e-6


def side_widths(scale: float = 1.0, widths: Sequence[int] = OFFICIAL_WIDTHS,
                heads: Sequence[int] = OFFICIAL_HEADS) -> list[int]:
    """Stage widths for a ``scale`` knob: ``C_s = heads_s * max(1, round(scale * widths_s / heads_s))``.

    ``scale`` multiplies the head width, so every width stays divisible by its head count;
    ``scale=1`` gives ``widths`` (official: 32, 48, 64, 72; 0.5 -> 16, 24, 32, 36; 2 -> 64, 96, 128, 144).

    Raises:
        HSTError: not four stages, a non-positive scale, or a width not divisible by its heads.
    """
    if len(widths) != 4 or len(heads) != 4:
        raise HSTError(f"HST has 4 side stages: widths and heads need 4 entries each, got {list(widths)} and {list(heads)}")
    if not scale > 0:
        raise HSTError(f"scale must be > 0, got {scale}")
    for c, h in zip(widths, heads, strict=True):
        if h < 1 or c < 1 or c % h:
            raise HSTError(f"side width {c} is not a positive multiple of its {h} heads (widths {list(widths)}, heads {list(heads)})")
    return [h * max(1, round(scale * c / h)) for c, h in zip(widths, heads, strict=True)]


def init_side_weights(module: nn.Module) -> None:
    """Official side-network init: Linear trunc-normal(0.02) and zero bias; LayerNorm 1 / 0;
    Conv2d normal(0, sqrt(2 / fan_out)) with ``fan_out = k_h k_w C_out / groups`` and zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _tokens(x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """``(B, C, H, W)`` -> ``(B, H*W, C)`` and ``(H, W)``."""
    return x.flatten(2).transpose(1, 2), (int(x.shape[-2]), int(x.shape[-1]))


# ---- memory-lean primitives of the side blocks (same maths, fewer tensors kept for backward) --------------
class _Standardize(torch.autograd.Function):
    """``xhat = (x - mean) / sqrt(var + eps)`` over the last dim, keeping ``xhat`` and ``1/sigma`` only.

    LayerNorm's input gradient needs nothing else: ``dx = (g - mean(g) - xhat mean(g xhat)) / sigma``.
    ``nn.LayerNorm`` keeps its input and the Linear after it keeps the output, two ``(..., C)``
    tensors; with the affine folded into that Linear (:func:`_fold_norm`) one is enough.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        xhat, _, rstd = torch.native_layer_norm(x, (x.shape[-1],), None, None, eps)
        ctx.save_for_backward(xhat, rstd)
        return xhat

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        xhat, rstd = ctx.saved_tensors
        acc = torch.promote_types(grad.dtype, torch.float32)  # bf16 / fp16 reduced in float32, float64 kept
        g, xh = grad.to(acc), xhat.to(acc)
        dx = (g - g.mean(-1, keepdim=True) - xh * (g * xh).mean(-1, keepdim=True)) * rstd.to(acc)
        return dx.to(grad.dtype), None


def standardize(x: Tensor, eps: float) -> Tensor:
    """LayerNorm of ``x`` ``(..., C)`` without its affine (see :class:`_Standardize`); float32 under
    autocast, as ``layer_norm`` is there."""
    if torch.is_autocast_enabled(x.device.type):
        x = x.float()
    return _Standardize.apply(x, eps)


def _fold_norm(norm: nn.LayerNorm, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``(W diag(gamma), W beta + b)``, so that ``Linear(LN(x)) = xhat W'^T + b'`` for the standardised ``xhat``.

    Weight-sized tensors (the folded weight is kept for backward: ``C_out x C`` numbers per step, not per token).
    """
    folded = weight if norm.weight is None else weight * norm.weight
    return folded, bias if norm.bias is None else F.linear(norm.bias, weight, bias)


class _GeluLinear(torch.autograd.Function):
    """``Linear(GELU(h))`` keeping ``h`` only: ``GELU(h)``, which the weight gradient needs, is recomputed
    in backward (one element-wise op) instead of being kept next to ``h``."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, approximate: str) -> Tensor:
        ctx.approximate = approximate
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight)
        return F.linear(F.gelu(hidden, approximate=approximate), weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        hidden, weight = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        d_hidden = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_act = grad @ weight.to(grad.dtype)
            d_hidden = torch.ops.aten.gelu_backward(d_act.to(hidden.dtype), hidden, approximate=ctx.approximate)
        if ctx.needs_input_grad[1]:
            act = F.gelu(hidden, approximate=ctx.approximate).to(grad.dtype)
            d_weight = (flat.t() @ act.reshape(-1, act.shape[-1])).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_bias = flat.sum(0).to(weight.dtype)
        return d_hidden, d_weight, d_bias, None


class Stem(nn.Module):
    """Stage-1 side tokens (official ``Head``): images ``(B, 3, H, W)`` -> ``(B, H/4 * W/4, C_1)``.

    Conv3x3 stride 2 (no bias) -> BatchNorm2d -> ReLU -> Conv2x2 stride 2 -> flatten -> LayerNorm.
    """

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, dim, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 2, stride=2),
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        tokens, size = _tokens(self.conv(x))
        return self.norm(tokens), size


class Downsample(nn.Module):
    """Stages 2-4 (official ``OverlapPatchEmbed``): ``(B, C_{s-1}, H, W)`` -> ``(B, H/2 * W/2, C_s)``.

    Conv3x3 stride 2 padding 1 (with bias) -> flatten -> LayerNorm.
    """

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        tokens, size = _tokens(self.proj(x))
        return self.norm(tokens), size


class MetaCrossAttention(nn.Module):
    """Cross-attention of the side tokens to a few key/value tokens (official ``M_C_Attention``).

    ``x`` ``(B, N, C)`` (already normalised) attends to ``kv`` ``(B, K, C)`` (not normalised):
    separate ``q``/``k``/``v`` Linear(C, C), ``heads`` heads of width ``C / heads``, scale
    ``(C / heads)^-1/2``, attention ``(B, heads, N, K)``, then ``proj``. Output ``(B, N, C)``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise HSTError(f"side width {dim} is not divisible by its {heads} heads")
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, kv: Tensor, norm: nn.LayerNorm | None = None) -> Tensor:
        """Attention output ``(B, N, C)``; ``x`` is normalised, or standardised with ``norm``'s affine still to apply.

        With more side tokens than ``heads * K``, computed in an equivalent cheaper form: the logits are
        ``x A_h + c_h`` with ``A_h = scale W_{q,h}^T k_h^T`` ``(C, K)`` per head and image, and the output
        is ``sum_h attn_h P_h + b_proj`` with ``P_h = v_h W_{proj,h}^T`` ``(K, C)``, so neither the queries
        nor the heads' concatenated output (``(B, N, C)`` each) are made or kept for backward.
        """
        b, n, c = x.shape
        k_len, h = kv.shape[1], self.num_heads
        d = c // h
        w_q, b_q = self.q.weight, self.q.bias
        if norm is not None:
            w_q, b_q = _fold_norm(norm, w_q, b_q)
        k = self.k(kv).reshape(b, k_len, h, d)
        v = self.v(kv).reshape(b, k_len, h, d)
        if n <= h * k_len:  # few tokens: the per-image (C, h K) maps would outweigh the queries
            q = F.linear(x, w_q, b_q).reshape(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
            attn = self.attn_drop(((q @ k.permute(0, 2, 3, 1)) * self.scale).softmax(dim=-1))  # (B, h, N, K)
            return self.proj_drop(self.proj((attn @ v.transpose(1, 2)).transpose(1, 2).reshape(b, n, c)))
        keys = torch.einsum("hdc,bjhd->bchj", w_q.reshape(h, d, c), k) * self.scale  # (B, C, h, K)
        logits = x @ keys.reshape(b, c, h * k_len)  # (B, N, h K)
        if b_q is not None:
            logits = logits + torch.einsum("hd,bjhd->bhj", b_q.reshape(h, d), k).reshape(b, 1, h * k_len) * self.scale
        attn = self.attn_drop(logits.reshape(b, n, h, k_len).softmax(dim=-1))  # (B, N, h, K)
        values = torch.einsum("bjhd,ohd->bhjo", v, self.proj.weight.reshape(c, h, d))  # (B, h, K, C)
        out = attn.reshape(b, n, h * k_len) @ values.reshape(b, h * k_len, c)
        if self.proj.bias is not None:
            out = out + self.proj.bias
        return self.proj_drop(out)


class SideBlock(nn.Module):
    """One side block (official ``M_Block``) on side tokens ``x`` ``(B, N, C)``::

        x = x + DropPath(Attn(LN1(x), kv))       kv = [meta; global] (B, K, C), not normalised
        x = x + vit                                bridged ViT features (B, N, C): no scale, no drop-path
        x = x + DropPath(MLP(LN2(x)))              MLP = Linear(C, rC) -> GELU -> Dropout -> Linear -> Dropout

    Kept for backward per side token (``r = 4``, no dropout, more tokens than ``h K``): the standardised
    inputs of LN1 and LN2 (their affines are folded into ``q`` and ``fc1``), the attention ``(h, K)`` and
    the MLP pre-activation: ``6 C + h K`` numbers, against ``14 C + h K`` for the modules called one after
    the other (each LayerNorm's input and output, the queries, the heads' output, the GELU output next to
    its input).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = MetaCrossAttention(dim, heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim), nn.Dropout(drop))

    def forward(self, x: Tensor, kv: Tensor, vit: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(standardize(x, self.norm1.eps), kv, self.norm1))
        x = x + vit
        return x + self.drop_path(self._mlp(standardize(x, self.norm2.eps)))

    def _mlp(self, xhat: Tensor) -> Tensor:
        """``MLP(LN2(x))`` from the standardised ``x``: LN2's affine folded into ``fc1``; without dropout,
        ``fc2(GELU(.))`` keeps the hidden pre-activation only (:class:`_GeluLinear`)."""
        fc1, act, drop1, fc2, drop2 = self.mlp
        hidden = F.linear(xhat, *_fold_norm(self.norm2, fc1.weight, fc1.bias))
        if drop1.p == 0 and drop2.p == 0 and isinstance(act, nn.GELU):
            return _GeluLinear.apply(hidden, fc2.weight, fc2.bias, act.approximate)
        return drop2(fc2(drop1(act(hidden))))


def resize_tokens(tokens: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``, no antialias) of ``(B, h*w, E)`` tokens on ``grid`` to
    ``(B, H*W, E)`` on ``size``; the identity (no copy) when the sizes agree."""
    if tuple(grid) == tuple(size):
        return tokens
    b, _, e = tokens.shape
    maps = tokens.transpose(1, 2).reshape(b, e, *grid)
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)


def bridge_tokens(tokens: Tensor, grid: tuple[int, int], size: tuple[int, int], bridge: nn.Linear,
                  bridge_first: bool) -> Tensor:
    """T-Bridge of one ViT layer's patch tokens at the stage resolution.

    ``V = W Bilinear(F -> size) + b`` (official order, ``bridge_first=False``) or, identically,
    ``V = Bilinear(W F + b -> size)`` (``bridge_first=True``): bilinear resizing with
    ``align_corners=False`` and no antialias mixes each output from input pixels with weights
    that sum to 1, so it commutes with the Linear, bias included (spec oracle 6). Bridging first
    works on the ``h*w`` grid instead of the ``H_s*W_s`` map (cheaper when upsampling) and keeps
    no resized ``D``-wide tensor for backward.

    Args:
        tokens: ``(B, h*w, D)`` patch tokens, row-major over ``grid``.
        grid: ``(h, w)``.
        size: the stage map ``(H_s, W_s)``.
        bridge: the stage's ``Linear(D, C_s)``.
        bridge_first: order of the two (same result up to rounding).

    Returns:
        ``(B, H_s*W_s, C_s)``.
    """
    if bridge_first:
        return resize_tokens(bridge(tokens), grid, size)
    return bridge(resize_tokens(tokens, grid, size))


class SideStage(nn.Module):
    """One side stage: embedding, ``len(layers)`` side blocks, final LayerNorm, T-Bridge, meta norms.

    Args:
        index: stage number ``s`` (0-based; stage 0 gets the :class:`Stem`).
        layers: the ViT blocks (0-based) whose outputs feed this stage's side blocks, in order.
        vit_dim: ``D``.
        in_dim: input channels (image channels for stage 0, else ``C_{s-1}``).
        dim, heads: ``C_s`` and ``h_s``.
        drop_paths: drop-path rate of each side block.

    The meta slot of layer ``l`` becomes ``M_l = LN_l(W_s g_l + b_s)`` (``meta_norms[j]`` is ``LN_l``;
    ``bridge`` is ``(W_s, b_s)``, shared with the patch features of every layer of the stage).
    """

    def __init__(self, index: int, layers: Sequence[int], vit_dim: int, in_dim: int, dim: int, heads: int,
                 mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float, drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.index = index
        self.layers = [int(i) for i in layers]
        self.dim = dim
        self.embed: nn.Module = Stem(in_dim, dim) if index == 0 else Downsample(in_dim, dim)
        self.blocks = nn.ModuleList(
            SideBlock(dim, heads, mlp_ratio, qkv_bias, drop, attn_drop, dp) for dp in drop_paths
        )
        self.norm = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.bridge = nn.Linear(vit_dim, dim)
        self.meta_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in self.layers)

    def bridge_layer(self, feats: HSTFeatures, layer: int, size: tuple[int, int], bridge_first: bool
                     ) -> tuple[Tensor, Tensor]:
        """``(W_s g_l + b_s (B, m, C_s), V_l (B, H_s*W_s, C_s))`` for ViT block ``layer``.

        Bridging first (or at the ViT grid's own size) bridges the whole block output once: the
        Linear keeps that output for backward and nothing else, where bridging the meta slot and the
        patch slice separately would keep the output alive through the meta view *and* a copy of
        the patches (the Linear flattens a non-contiguous slice by copying it).
        """
        z = feats.tokens[layer]
        if bridge_first or tuple(size) == tuple(feats.grid):
            meta, patches = feats.split(self.bridge(z))
            # a copy of the small meta slot: the meta LayerNorm would keep the whole bridged output alive
            return meta.clone(), resize_tokens(patches, feats.grid, size)
        meta, patches = feats.split(z)
        # a copy of the small meta slot: a view would keep the whole block output alive
        return self.bridge(meta.contiguous()), self.bridge(resize_tokens(patches, feats.grid, size))

    def forward(self, x: Tensor, feats: HSTFeatures, bridge_order: str) -> Tensor:
        """Side map ``(B, C_s, H_s, W_s)`` from the previous map (or the images for stage 0).

        Args:
            x: ``(B, C_{s-1}, 2H_s, 2W_s)`` or images ``(B, 3, 4H_s, 4W_s)``.
            feats: the ViT block outputs (this stage reads its own ``layers``).
            bridge_order: ``"auto"`` (bridge first where the stage map has more tokens than the ViT
                grid), ``"resize_first"`` (official) or ``"bridge_first"``.
        """
        tokens, size = self.embed(x)
        grid = feats.grid
        bridge_first = size[0] * size[1] > grid[0] * grid[1] if bridge_order == "auto" else bridge_order == "bridge_first"
        for j, layer in enumerate(self.layers):
            meta, vit = self.bridge_layer(feats, layer, size, bridge_first)
            kv = torch.cat([self.meta_norms[j](meta), vit.mean(dim=1, keepdim=True)], dim=1)  # (B, m + 1, C)
            tokens = self.blocks[j](tokens, kv, vit)
        tokens = self.norm(tokens)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], self.dim, *size)
