"""Class activation maps: multi-scale flip-fused CAMs, ``cam_to_label`` and the valid-box mask.

Multi-scale CAM (spec §2.3; official ``multi_scale_cam2``), no grad, for every scale ``s``::

    x_s = bilinear(x, (int(s H), int(s W)));   A, A' = cam_fn([x_s; flip(x_s)])
    A_s = relu(max(up(A), flip(up(A'))))        (up: bilinear to H x W, align_corners=False)
    A_hat = (sum_s A_s - min) / (max(sum_s A_s - min) + 1e-5)     per (image, class): values in [0, 1)

The max over the flip pair is symmetric, so ``MSCAM(flip x) == flip(MSCAM(x))``. Scales are used as
given (the official code always runs scale 1.0 too, whatever the list says).

``cam_to_label`` (spec §2.4): with ``v = max_c y_c A_hat_c`` and ``c*`` its argmax, eval mode gives
``c*+1`` if ``v > background`` else 0; training mode (``low``/``high`` given) gives ``c*+1`` if ``v > high``,
ignore if ``low < v <= high`` and 0 if ``v <= low``; pixels outside ``valid`` (the image box of a
padded crop, :func:`box_mask`) are ignore. Defaults VOC: high 0.7, low 0.25, background 0.5
(COCO: 0.65, 0.25, 0.45).

Post-model work (resizing, fusion, normalisation) runs in at least float32 with autocast off, so CAMs
computed under bf16 autocast are normalised at full precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.methods.toco.errors import ToCoError

__all__ = ["DEFAULT_SCALES", "box_mask", "cam_to_label", "check_labels", "multi_scale_cam", "normalise_cam"]

#: official CAM scales (training and validation)
DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 1.5)


def full_precision(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``t``'s device (a no-op context when it is not on)."""
    kind = t.device.type
    if torch.is_autocast_enabled(kind):
        return torch.autocast(kind, enabled=False)
    return contextlib.nullcontext()


def work_dtype(t: Tensor) -> torch.dtype:
    """``t``'s dtype promoted to at least float32."""
    return torch.promote_types(t.dtype, torch.float32)


def normalise_cam(cam: Tensor, eps: float = 1e-5) -> Tensor:
    """Min-max normalise ``(B, C, H, W)`` per (image, class): ``(A - min) / (max(A - min) + eps)``."""
    cam = cam - cam.amin(dim=(-2, -1), keepdim=True)
    return cam / (cam.amax(dim=(-2, -1), keepdim=True) + eps)


@torch.no_grad()
def multi_scale_cam(
    cam_fn: Callable[[Tensor], Tensor | Sequence[Tensor]],
    images: Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    known: Sequence[Tensor] | None = None,
) -> tuple[Tensor, ...]:
    """Flip-fused, multi-scale, min-max normalised CAMs at the input resolution.

    Args:
        cam_fn: images ``(2B, 3, h, w)`` -> raw CAM(s) ``(2B, C, h', w')`` at any resolution (e.g.
            :meth:`ToCo.cams <visionkit.methods.toco.ToCo.cams>`, which returns ``(cam, cam_aux)``).
        images: ``(B, 3, H, W)``.
        scales: resize factors (official ``(1.0, 0.5, 1.5)``).
        known: the raw CAM(s) ``cam_fn(images)`` already at hand (``(B, C, h', w')`` each, in ``cam_fn``'s
            order, e.g. from the training forward): at the scale that keeps the input size only the
            flipped images go through ``cam_fn``. The caller vouches that ``cam_fn`` gives each image the
            same maps alone as in that batch (no dropout, drop-path or batch statistics).

    Returns:
        one ``(B, C, H, W)`` map in ``[0, 1)`` per CAM of ``cam_fn``, in its order (float32 or wider).
    """
    if images.ndim != 4:
        raise ToCoError(f"multi-scale CAM expects images (B, C, H, W), got shape {tuple(images.shape)}")
    if not scales or any(not s > 0 for s in scales):
        raise ToCoError(f"CAM scales must be a non-empty list of positive factors, got {list(scales)}")
    b, _, h, w = images.shape
    sums: list[Tensor] | None = None
    for s in scales:
        size = (int(s * h), int(s * w))
        if min(size) < 1:
            raise ToCoError(
                f"CAM scale {s} turns {h}x{w} images into {size[0]}x{size[1]}; use a larger scale"
            )
        x = (
            images
            if size == (h, w)
            else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        )
        if known is not None and size == (h, w):
            out = cam_fn(x.flip(-1))
            pairs = list(zip(known, [out] if isinstance(out, Tensor) else out, strict=True))
        else:
            out = cam_fn(torch.cat([x, x.flip(-1)], dim=0))
            pairs = [(m[:b], m[b:]) for m in ([out] if isinstance(out, Tensor) else out)]
        with full_precision(images):
            fused = []
            for plain, flipped in pairs:
                up, up_flip = (
                    F.interpolate(m.to(work_dtype(m)), size=(h, w), mode="bilinear", align_corners=False)
                    for m in (plain, flipped)
                )
                fused.append(torch.maximum(up, up_flip.flip(-1), out=up).relu_())  # up: a fresh tensor
        sums = fused if sums is None else [a.add_(f) for a, f in zip(sums, fused, strict=True)]
    return tuple(_normalise_(a) for a in sums)


def _normalise_(cam: Tensor, eps: float = 1e-5) -> Tensor:
    """:func:`normalise_cam` in place (the same arithmetic), for the fused maps ``multi_scale_cam`` owns."""
    cam.sub_(cam.amin(dim=(-2, -1), keepdim=True))
    return cam.div_(cam.amax(dim=(-2, -1), keepdim=True).add_(eps))


def check_labels(labels: Tensor, cam: Tensor, allow_unlabelled: bool = False, what: str = "cam") -> None:
    """Raise a one-line :class:`ToCoError` unless ``labels`` is a ``(B, C)`` multi-hot matching ``cam``.

    An image with no label has no CAM to read; it is refused unless ``allow_unlabelled`` (then
    all its pixels are background).
    """
    if labels.ndim != 2 or cam.ndim != 4 or tuple(labels.shape) != tuple(cam.shape[:2]):
        raise ToCoError(
            f"labels must be (B, C) = {tuple(cam.shape[:2])} multi-hot image labels for the {what} of shape "
            f"{tuple(cam.shape)}, got {tuple(labels.shape)}"
        )
    if not ((labels == 0) | (labels == 1)).all():
        raise ToCoError(
            f"labels must be multi-hot (0 or 1 per class), got values {labels.unique().tolist()[:6]}"
        )
    if not allow_unlabelled:
        empty = (labels.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ToCoError(
                f"image {empty[0]} of the batch has no image label, so its {what} names no class "
                f"(pass allow_unlabelled=True to label such images all background)"
            )


def box_mask(img_box: Tensor, size: tuple[int, int], stride: float | tuple[float, float] = 1.0) -> Tensor:
    """``(B, h, w)`` bool: cells whose centre lies in the image box.

    Args:
        img_box: ``(B, 4)`` valid region ``[h0, h1, w0, w1]`` in input pixels (end exclusive).
        size: ``(h, w)`` of the map.
        stride: input pixels per map cell (1 at full resolution; the patch size on the token grid).
            At stride 1 this is the official slice ``[h0:h1, w0:w1]``.
    """
    if img_box.ndim != 2 or img_box.shape[1] != 4:
        raise ToCoError(f"img_box must be (B, 4) boxes [h0, h1, w0, w1], got shape {tuple(img_box.shape)}")
    sh, sw = (stride, stride) if isinstance(stride, int | float) else stride
    box = img_box.to(torch.float64)
    ys = (torch.arange(size[0], device=img_box.device, dtype=torch.float64) + 0.5) * sh
    xs = (torch.arange(size[1], device=img_box.device, dtype=torch.float64) + 0.5) * sw
    rows = (ys >= box[:, 0:1]) & (ys < box[:, 1:2])
    cols = (xs >= box[:, 2:3]) & (xs < box[:, 3:4])
    return rows[:, :, None] & cols[:, None, :]


def cam_to_label(
    cam: Tensor,
    labels: Tensor,
    *,
    background: float = 0.5,
    low: float | None = None,
    high: float | None = None,
    valid: Tensor | None = None,
    ignore_index: int = 255,
    allow_unlabelled: bool = False,
) -> Tensor:
    """Pixel labels ``(B, H, W)`` (long; 0 background, ``c+1`` class ``c``, ``ignore_index``) from CAMs.

    Args:
        cam: normalised CAMs ``(B, C, H, W)``.
        labels: ``(B, C)`` multi-hot image labels; absent classes never appear.
        background: eval-mode threshold (foreground iff ``v > background``); unused in training mode.
        low, high: training mode (both or neither): ``v <= low`` -> 0, ``low < v <= high`` -> ignore.
        valid: ``(B, H, W)`` bool; pixels outside are ``ignore_index`` (see :func:`box_mask`).
    """
    check_labels(labels, cam, allow_unlabelled)
    if (low is None) != (high is None):
        raise ToCoError(
            f"cam_to_label needs both low and high (training mode) or neither, got low={low}, high={high}"
        )
    if low is not None and not 0 <= low <= high:
        raise ToCoError(f"cam_to_label thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    if low is None and background < 0:
        raise ToCoError(f"cam_to_label background threshold must be >= 0, got {background}")
    value, index = (cam * labels.to(cam.dtype)[:, :, None, None]).max(dim=1)
    fg = index + 1
    if low is None:
        out = torch.where(value > background, fg, 0)
    else:
        out = torch.where(value > high, fg, torch.where(value > low, ignore_index, 0))
    if valid is not None:
        if tuple(valid.shape) != tuple(out.shape):
            raise ToCoError(f"valid must be a (B, H, W) = {tuple(out.shape)} mask, got {tuple(valid.shape)}")
        out = torch.where(valid.bool(), out, ignore_index)
    return out
