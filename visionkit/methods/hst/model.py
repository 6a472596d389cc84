"""Hierarchical Side-Tuning (HST; Lin et al., 2023) in pure torch, on any timm ViT/DeiT.

Official code: AFeng-x/HST ``models/vit_hsn.py`` (``ViT_HSN``) and ``models/vit_custom_modules.py``;
spec ``side_tuning_hst_unipt_lst.md`` §2.A. Notation: frozen ViT of depth ``L``, width ``D``, patch
grid ``h x w``; side stage ``s`` of width ``C_s`` works on ``H/2^(s+1) x W/2^(s+1)`` (strides 4, 8,
16, 32); stage ``s`` reads the ViT blocks ``stage_layers[s]`` (official: 0-2, 3-5, 6-8, 9-11).

For every ViT block ``l`` (official semantics, ``detached=False``)::

    z_l = Block_l([m_l; t_{l-1}])      m_l (1, m, D) learnable meta token(s), in front of the class token,
                                       no position embedding; t_l = z_l without the meta token
    g_l = z_l[:, :m]                   meta output             F_l = patch tokens of z_l (B, h*w, D)
    M_l = LN_l(W_s g_l + b_s)          (B, m, C_s)             V_l = W_s Resize(F_l) + b_s (B, H_s W_s, C_s)
    u_l = mean_tokens(V_l)             (B, 1, C_s)

and side block ``j`` of stage ``s`` (ViT block ``l``) updates the side tokens ``X`` (see
:class:`~visionkit.methods.hst.stages.SideBlock`) with ``kv = [M_l; u_l]`` and ``V_l``. The stage ends
with a LayerNorm; its map ``(B, C_s, H_s, W_s)`` is one pyramid level and the next stage's input.
Classification: mean of the stage-4 tokens -> BatchNorm1d(C_4, affine=False, eps=1e-6) -> Linear(C_4, K).

Gradients flow back through the frozen ViT into the meta tokens (and the trained ViT block
LayerNorms), so official HST is parameter-efficient but *not* activation-memory-efficient.
``detached=True`` is visionkit's memory-saving variant (a different method, not HST): the ViT runs
under ``torch.no_grad()`` with no meta tokens and frozen LayerNorms, and the meta slot holds the
block's class-token output (the mean patch token for ViTs without one).

Differences from the official code: the frozen ViT stays in eval mode (no drop-path or dropout in
it; the official code trains it in train mode with the side network's drop-path ramp); input sizes
the stages cannot divide are refused; bridging before resizing is used where it is cheaper
(``bridge_order="auto"``, identical math); ViTs of any depth >= 4 (stage split by ``block_indices``).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.backbones import ViTStepper, insert_tokens
from visionkit.methods.hst.errors import HSTError
from visionkit.methods.hst.features import HSTFeatures
from visionkit.methods.hst.side import BridgeOrder, HSTSideNetwork
from visionkit.methods.hst.stages import OFFICIAL_HEADS, OFFICIAL_WIDTHS, STRIDES, side_widths
from visionkit.tuners import SideTuner

__all__ = ["HST", "default_block_indices", "stage_layers"]


def default_block_indices(depth: int) -> list[int]:
    """Last ViT block (0-based) of each side stage: ``(s+1) * L // 4 - 1`` (12 -> 2, 5, 8, 11; 8 -> 1, 3, 5, 7)."""
    return [(s + 1) * depth // 4 - 1 for s in range(4)]


def stage_layers(depth: int, block_indices: Sequence[int] | None = None) -> list[list[int]]:
    """ViT blocks of each side stage: stage ``s`` reads ``(block_indices[s-1], block_indices[s]]``.

    Every block feeds exactly one side block (the official invariant ``m_depths[s] == #blocks``).

    Raises:
        HSTError: fewer than 4 blocks, or ``block_indices`` not 4 increasing indices ending at ``L - 1``.
    """
    if depth < 4:
        raise HSTError(f"HST needs a ViT with at least 4 blocks (one per side stage), got {depth}")
    ends = default_block_indices(depth) if block_indices is None else [int(i) for i in block_indices]
    ok = len(ends) == 4 and ends[0] >= 0 and ends[-1] == depth - 1 and all(a < b for a, b in zip(ends, ends[1:], strict=False))
    if not ok:
        raise HSTError(
            f"block_indices must be 4 increasing ViT block indices ending at the last block {depth - 1} "
            f"(the last block of each side stage), got {list(block_indices or [])}"
        )
    starts = [0, *(e + 1 for e in ends[:-1])]
    return [list(range(a, e + 1)) for a, e in zip(starts, ends, strict=True)]


class HST(SideTuner):
    """HST on a frozen timm ViT/DeiT: ``(B, C, H, W) -> (B, K)`` logits, plus :meth:`pyramid` for dense heads.

    Trainable (official, ``detached=False``): the meta tokens, the ViT blocks' LayerNorms
    (``blocks.*.norm*``; ``train_vit_norms=False`` freezes them), the side network and the head; on
    ViT-B/16 that is ``764,840 + 73 K`` parameters (``727,976 + 73 K`` without the ViT LayerNorms).
    Everything else in the ViT (patch embedding, position embedding, class token, attention and MLP
    weights, final norm) is frozen and stays in eval mode; its classifier is removed.

    Args:
        backbone: a timm ViT/DeiT (anything :class:`~visionkit.backbones.ViTStepper` can step).
        num_classes: ``K`` (0: no head; ``forward`` returns the pooled stage-4 features).
        scale: multiplies the side widths' head width (:func:`~visionkit.methods.hst.stages.side_widths`).
        widths, heads: side widths and head counts before ``scale`` (official 32/48/64/72, 2/4/8/12).
        block_indices: last ViT block of each stage (default :func:`default_block_indices`).
        num_meta_tokens: meta tokens per block (official ``metaG_num = 1``).
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: side-network settings.
        detached: the memory-saving variant (ViT under ``no_grad``, no meta tokens, ViT norms frozen).
        train_vit_norms: train the ViT blocks' LayerNorms (default: ``not detached``).
        bridge_order: see :class:`HSTSideNetwork`.

    Raises:
        HSTError: a backbone without token blocks (e.g. a CNN), or bad arguments.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, scale: float = 1.0,
                 widths: Sequence[int] = OFFICIAL_WIDTHS, heads: Sequence[int] = OFFICIAL_HEADS,
                 block_indices: Sequence[int] | None = None, num_meta_tokens: int = 1, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, detached: bool = False, train_vit_norms: bool | None = None,
                 bridge_order: BridgeOrder = "auto") -> None:
        stepper = _stepper(backbone)
        vit = stepper.model
        train_norms = not detached if train_vit_norms is None else bool(train_vit_norms)
        if detached and train_norms:
            raise HSTError("detached=True runs the ViT under no_grad, so its LayerNorms cannot train: "
                           "leave train_vit_norms unset or False")
        proj = getattr(vit.patch_embed, "proj", None)
        in_chans = proj.in_channels if isinstance(proj, nn.Conv2d) else 3
        side = HSTSideNetwork(
            _width(vit), stage_layers(stepper.depth, block_indices), num_classes,
            side_widths(scale, widths, heads), heads, num_meta_tokens=0 if detached else num_meta_tokens,
            in_chans=in_chans, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, bridge_order=bridge_order,
        )
        if hasattr(vit, "reset_classifier"):
            vit.reset_classifier(0)
        norms = [n for n, _ in backbone.named_parameters() if re.search(r"(^|\.)blocks\.\d+\..*norm", n)]
        super().__init__(backbone, side, backbone_no_grad=detached, trainable=norms if train_norms else ())
        self.detached = detached
        self.in_chans = in_chans
        self.has_class_token = getattr(vit, "cls_token", None) is not None
        patch = tuple(int(p) for p in getattr(vit.patch_embed, "patch_size", (1, 1)))
        self.size_unit = (math.lcm(STRIDES[-1], patch[0]), math.lcm(STRIDES[-1], patch[1]))
        fixed = getattr(vit.patch_embed, "img_size", None)
        self.fixed_size = None if getattr(vit, "dynamic_img_size", False) or not fixed else tuple(int(v) for v in fixed)

    # ---- properties -------------------------------------------------------------------------------
    @property
    def widths(self) -> list[int]:
        """Side widths ``C_1..C_4``."""
        return list(self.side_network.widths)

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each pyramid level: (4, 8, 16, 32)."""
        return STRIDES

    @property
    def stage_layers(self) -> list[list[int]]:
        """ViT blocks feeding each side stage."""
        return [list(ls) for ls in self.side_network.layers]

    @property
    def meta_tokens(self) -> nn.Parameter | None:
        """``(L, m, D)`` meta tokens (``None`` when detached)."""
        return self.side_network.meta_tokens

    # ---- forward ----------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """Raise a one-line :class:`HSTError` for images the ViT or the side stages cannot take."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise HSTError(f"HST expects images (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        uh, uw = self.size_unit
        if h % uh or w % uw:
            unit = f"{uh}" if uh == uw else f"{uh} (height) and {uw} (width)"
            patch_note = "" if (uh, uw) == (STRIDES[-1],) * 2 else " and the ViT patch size"
            raise HSTError(
                f"HST input size {h}x{w} is not divisible by {unit}: the side stages run at strides "
                f"4, 8, 16, 32{patch_note}; use e.g. {max(uh, h // uh * uh)}x{max(uw, w // uw * uw)}"
            )
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            fh, fw = self.fixed_size
            raise HSTError(f"HST input size {h}x{w}, but the ViT takes {fh}x{fw} only: "
                           f"build it with img_size={h} or dynamic_img_size=True")

    def extract(self, x: Tensor) -> HSTFeatures:
        """Run the ViT block by block with the meta tokens and collect what the side network reads."""
        self.check_input(x)
        stepper = ViTStepper(self.base_model)
        meta = self.side_network.meta_tokens
        m = 0 if meta is None else meta.shape[1]
        outputs: list[Tensor] = []

        def pre(i: int, tokens: Tensor) -> Tensor | None:
            return None if meta is None else insert_tokens(tokens, meta[i])  # (B, m + P + N, D)

        def post(i: int, z: Tensor) -> Tensor | None:
            outputs.append(z)
            return z[:, m:] if m else None  # drop the meta token(s): a fresh one enters the next block

        scope = torch.no_grad() if self.backbone_no_grad else contextlib.nullcontext()
        with scope:
            out = stepper.run(x, pre, post, norm=False)
        summary = "meta" if m else ("class" if self.has_class_token else "mean")
        return HSTFeatures(x, outputs, out.grid, m, stepper.num_prefix_tokens, summary)

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """Side feature maps ``[(B, C_s, H/s, W/s) for s in (4, 8, 16, 32)]`` for dense heads."""
        return self.side_network.pyramid(self.extract(x))


def _describe(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return f"'{cfg['architecture']}'" if cfg.get("architecture") else type(model).__name__


def _stepper(backbone: nn.Module) -> ViTStepper:
    try:
        return ViTStepper(backbone)
    except TypeError as err:
        missing = [a for a in ("patch_embed", "_pos_embed", "blocks", "num_prefix_tokens") if not hasattr(backbone, a)]
        raise HSTError(
            f"HST needs a timm ViT/DeiT whose token blocks it can step through; {_describe(backbone)} has no "
            f"token blocks (it lacks {', '.join(missing) or err}; a CNN has none)"
        ) from err


def _width(vit: nn.Module) -> int:
    width = getattr(vit, "embed_dim", None) or getattr(vit, "num_features", None)
    if not width:
        raise HSTError(f"cannot read the token width of {_describe(vit)} (no embed_dim or num_features)")
    return int(width)
