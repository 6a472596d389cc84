"""ToCo (Ru et al., CVPR 2023) in pure torch: a timm ViT with classifier, aux classifier, LargeFOV
decoder and CTC heads.

Official code: rulixiang/ToCo ``model/model_seg_neg.py``; spec ``toco.md`` §2.1-2.2. For images
``(B, 3, H, W)`` and a ViT of depth ``L``, width ``D``, patch ``p`` (grid ``h x w = H/p x W/p``),
one pass through :func:`visionkit.backbones.get_intermediates` gives

* ``F`` ``(B, D, h, w)``: final patch tokens *after* the final norm;
* ``F^m`` ``(B, D, h, w)``: the *un-normed* output of block ``aux_layer`` (official ``-3``, i.e.
  0-based block ``L-3``, the 10th of 12; class token dropped);
* ``t`` ``(B, D)``: the summary token (class token after the final norm; the model's own pooled
  pre-logits for ViTs without one).

Heads, all without bias: ``z = W . GMP(F)`` and ``z^m = W^m . GMP(F^m)`` (global *max* pooling,
then the linear map), CAMs ``A = W * F`` and ``A^m = W^m * F^m`` (per-location dot products, no
ReLU), ``seg = LargeFOV(F)`` ``(B, C+1, h, w)``, and the CTC student/teacher heads on ``t``.

Choices: the position embedding is frozen as in the official ViT (``freeze_pos_embed=False``
trains it, timm's default); the ViT's classifier is removed. CTC reuses the class tokens of the
global views for the teacher (detached) instead of running the encoder a second time on them: the
same numbers when the encoder is deterministic (official drop rates are 0), one encoder pass less;
the first global view is the main input, so the forward's ``class_token`` can serve as its student
token too (:meth:`ToCo.contrast`), which saves another. Likewise the multi-scale CAM's un-flipped half at
scale 1.0 is read off the training forward's tokens (:meth:`ToCo.multi_scale_cams` with ``out``) when
:meth:`ToCo.deterministic_encoder` holds (no active dropout, drop-path or batch norm); otherwise it gets its
own pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.backbones import get_intermediates
from visionkit.methods.toco.cam import DEFAULT_SCALES, multi_scale_cam
from visionkit.methods.toco.ctc import CTCHeads
from visionkit.methods.toco.decoder import LargeFOV
from visionkit.methods.toco.errors import ToCoError

__all__ = ["ToCo", "ToCoOutput"]

_VIT_PARTS = ("patch_embed", "blocks", "norm", "num_prefix_tokens", "forward_intermediates", "forward_head")


@dataclass
class ToCoOutput:
    """One training forward.

    Attributes:
        logits: ``(B, C)`` image logits ``W . GMP(F)``.
        aux_logits: ``(B, C)`` aux image logits ``W^m . GMP(F^m)``.
        seg: ``(B, C+1, h, w)`` segmentation logits at the patch stride (channel 0 = background).
        features: ``F`` ``(B, D, h, w)``, final post-norm tokens (PTC works on them).
        aux_features: ``F^m`` ``(B, D, h, w)``, un-normed tokens of block ``aux_layer``.
        class_token: ``t`` ``(B, D)``.
    """

    logits: Tensor
    aux_logits: Tensor
    seg: Tensor
    features: Tensor
    aux_features: Tensor
    class_token: Tensor


def _describe(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return f"'{cfg['architecture']}'" if cfg.get("architecture") else type(model).__name__


class ToCo(nn.Module):
    """ToCo network on a timm ViT built with ``dynamic_img_size=True``.

    Args:
        backbone: a timm ``VisionTransformer`` (or subclass) with ``dynamic_img_size=True``.
        num_classes: ``C`` foreground classes (20 VOC, 80 COCO); the decoder adds background.
        aux_layer: block whose un-normed output feeds the aux classifier (negatives count from the end).
        decoder_dim, decoder_dilation: LargeFOV width and dilation (official 512, 5).
        ctc_dim, ctc_hidden_dim, ctc_bottleneck_dim: CTC head sizes (official 1024, 2048, 256).
        momentum: CTC teacher EMA momentum (official 0.9).
        freeze_pos_embed: freeze the position embedding (official).

    Raises:
        ToCoError: a backbone without ViT token blocks (e.g. a CNN), without ``dynamic_img_size``,
            or an ``aux_layer`` out of range.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        aux_layer: int = -3,
        decoder_dim: int = 512,
        decoder_dilation: int = 5,
        ctc_dim: int = 1024,
        ctc_hidden_dim: int = 2048,
        ctc_bottleneck_dim: int = 256,
        momentum: float = 0.9,
        freeze_pos_embed: bool = True,
    ) -> None:
        super().__init__()
        missing = [a for a in _VIT_PARTS if not hasattr(backbone, a)]
        if missing:
            raise ToCoError(
                f"ToCo needs a timm ViT with token blocks; {_describe(backbone)} lacks "
                f"{', '.join(missing)} (a CNN has no patch tokens)"
            )
        if not getattr(backbone, "dynamic_img_size", False):
            raise ToCoError(
                f"ToCo needs a ViT built with dynamic_img_size=True (multi-scale CAMs and local crops "
                f"change the token grid); {_describe(backbone)} has a fixed input size"
            )
        if getattr(backbone, "global_pool", "token") in ("", None):
            raise ToCoError(
                f"ToCo needs a summary token for CTC; {_describe(backbone)} has global_pool='' "
                f"(build it with global_pool='token' or 'avg')"
            )
        depth = len(backbone.blocks)
        if isinstance(aux_layer, bool) or not isinstance(aux_layer, int) or not -depth <= aux_layer < depth:
            raise ToCoError(
                f"aux_layer={aux_layer!r} is out of range for a ViT with {depth} blocks "
                f"(valid: {-depth}..{depth - 1}; official -3)"
            )
        if num_classes < 1:
            raise ToCoError(f"num_classes must be >= 1 foreground classes, got {num_classes}")
        width = int(getattr(backbone, "embed_dim", 0) or getattr(backbone, "num_features", 0))
        if hasattr(backbone, "reset_classifier"):
            backbone.reset_classifier(0)
        pos = getattr(backbone, "pos_embed", None)
        if freeze_pos_embed and isinstance(pos, nn.Parameter):
            pos.requires_grad_(False)
        self.backbone = backbone
        self.num_classes = num_classes
        self.aux_index = aux_layer % depth
        self.classifier = nn.Conv2d(width, num_classes, 1, bias=False)
        self.aux_classifier = nn.Conv2d(width, num_classes, 1, bias=False)
        self.decoder = LargeFOV(width, num_classes + 1, decoder_dim, decoder_dilation)
        self.ctc = CTCHeads(width, ctc_dim, ctc_hidden_dim, ctc_bottleneck_dim, momentum)

    @property
    def patch_size(self) -> tuple[int, int]:
        """``(p_h, p_w)`` of the ViT."""
        patch = self.backbone.patch_embed.patch_size
        return (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line :class:`ToCoError` for images the ViT cannot take."""
        if x.ndim != 4:
            raise ToCoError(f"ToCo expects images (B, C, H, W), got shape {tuple(x.shape)}")
        (ph, pw), (h, w) = self.patch_size, x.shape[-2:]
        padded = getattr(self.backbone.patch_embed, "dynamic_img_pad", False)
        if not padded and (h % ph or w % pw or h < ph or w < pw):
            raise ToCoError(
                f"ToCo input size {h}x{w} is not a multiple of the ViT patch size {ph}x{pw}; "
                f"use e.g. {max(ph, h // ph * ph)}x{max(pw, w // pw * pw)}"
            )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(F (B, D, h, w) post-norm, F^m (B, D, h, w) un-normed block aux_layer, t (B, D))``."""
        self.check_input(x)
        out = get_intermediates(
            self.backbone, x, indices=[self.aux_index], norm=False, output_fmt="NCHW", prefix_tokens=False
        )
        final = out.final  # (B, P + h*w, D) after the final norm
        grid = out.grid or tuple(out.features[0].shape[-2:])
        patches = final[:, self.backbone.num_prefix_tokens :]
        features = patches.transpose(1, 2).reshape(final.shape[0], final.shape[-1], *grid)
        return features, out.features[0], self.backbone.forward_head(final, pre_logits=True)

    def forward(self, x: Tensor) -> ToCoOutput:
        features, aux, token = self.encode(x)
        logits = self.classifier(F.adaptive_max_pool2d(features, 1)).flatten(1)
        aux_logits = self.aux_classifier(F.adaptive_max_pool2d(aux, 1)).flatten(1)
        return ToCoOutput(logits, aux_logits, self.decoder(features), features, aux, token)

    def cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw CAMs ``(A, A^m)``, each ``(B, C, h, w)`` (no ReLU, no decoder)."""
        features, aux, _ = self.encode(x)
        return F.conv2d(features, self.classifier.weight), F.conv2d(aux, self.aux_classifier.weight)

    def multi_scale_cams(
        self, x: Tensor, scales: Sequence[float] = DEFAULT_SCALES, out: ToCoOutput | None = None
    ) -> tuple[Tensor, Tensor]:
        """Normalised multi-scale CAMs ``(A_hat, A_hat^m)``, each ``(B, C, H, W)`` in [0, 1), no grad.

        ``out``: this model's forward of the same ``x`` (e.g. the training forward). When
        :meth:`deterministic_encoder` holds, its (detached) tokens give the un-flipped CAMs at scale 1.0, so
        only the flipped images go through the encoder there: the same maps up to float rounding (a batch
        of ``B`` instead of ``2B``), half the scale-1 encoder work. Otherwise ``out`` is ignored.
        """
        known = None
        if out is not None and self.deterministic_encoder():
            features, aux = out.features.detach(), out.aux_features.detach()
            known = (F.conv2d(features, self.classifier.weight), F.conv2d(aux, self.aux_classifier.weight))
        cam, cam_aux = multi_scale_cam(self.cams, x, scales, known)
        return cam, cam_aux

    def deterministic_encoder(self) -> bool:
        """Whether an encoder pass in the current mode gives each image's tokens independently of the RNG and
        of the rest of its batch, so a forward's tokens equal those of a separate no-grad pass.

        False when any backbone module in training mode is a dropout-like layer (class name containing
        ``Drop``: ``Dropout``, timm's ``DropPath``, ``PatchDropout``, ...) with a positive rate, or one
        without a rate attribute to read, or a batch norm (batch statistics; running-stat updates). The
        official ViT has all drop rates at 0, so this holds in training too; in eval mode it always holds.
        """
        for module in self.backbone.modules():
            if not module.training:
                continue
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                return False
            if "Drop" in type(module).__name__:
                rates = [getattr(module, a) for a in ("p", "drop_prob", "prob", "drop_rate") if hasattr(module, a)]
                if not rates or any(not isinstance(r, int | float) or r > 0 for r in rates):
                    return False
        return True

    def class_tokens(self, x: Tensor) -> Tensor:
        """Summary tokens ``(..., D)`` of images ``(..., C, H, W)`` (any leading batch dims)."""
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        self.check_input(flat)
        token = self.backbone.forward_head(self.backbone.forward_features(flat), pre_logits=True)
        return token.reshape(*lead, token.shape[-1])

    def contrast(
        self, global_tokens: Tensor, local_views: Tensor, update_teacher: bool = True
    ) -> tuple[Tensor, Tensor]:
        """CTC outputs ``(teacher (B, G, K), student (B, G + n, K))``.

        Args:
            global_tokens: ``(B, G, D)`` summary tokens of the global views, with grad (e.g. the
                forward's ``class_token`` and :meth:`class_tokens` of the second view, stacked).
            local_views: ``(B, n, C, s, s)`` local crops (see ``sample_local_crops``).
            update_teacher: EMA-update the teacher first (training mode only).
        """
        return self.ctc(global_tokens, self.class_tokens(local_views), update_teacher)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters in the official groups: ``backbone`` and ``backbone_norm`` (base lr),
        ``heads`` (classifiers and the CTC student) and ``decoder`` (10x lr). The teacher is in none."""
        groups: dict[str, list[nn.Parameter]] = {
            "backbone": [],
            "backbone_norm": [],
            "heads": [],
            "decoder": [],
        }
        for name, p in self.backbone.named_parameters():
            if p.requires_grad:
                groups["backbone_norm" if "norm" in name else "backbone"].append(p)
        heads = [
            *self.classifier.parameters(),
            *self.aux_classifier.parameters(),
            *self.ctc.student.parameters(),
        ]
        groups["heads"] = [p for p in heads if p.requires_grad]
        groups["decoder"] = [p for p in self.decoder.parameters() if p.requires_grad]
        return groups
