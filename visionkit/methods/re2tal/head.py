"""An ActionFormer-lite temporal action localization head, its targets, losses and decoding, in pure torch.

One pyramid level at stride 1 (spec A7 item 5; ActionFormer / OpenTAD use six levels, strides 1-32).
Positions are in *step units*: step ``i`` of a ``(B, C, L)`` feature sequence covers ``[i, i + 1)`` and
is centred at ``i + 0.5``; a clip of ``duration`` seconds has ``duration / L`` seconds per step.

* :class:`TemporalHead`: features ``(B, C, L)`` -> class logits ``(B, L, K)`` and distances to the start
  and end ``(B, L, 2)`` (steps, ``>= 0``: ``relu(scale * conv)``, as ActionFormer).
* :func:`assign_targets`: ground-truth segments -> per-step class targets, regression targets and the
  positive mask (centre sampling with radius ``center_radius`` steps; a step inside several segments takes
  the shortest, as ActionFormer).
* :func:`sigmoid_focal_loss` and :func:`diou_loss_1d` (DIoU of two 1-D segments given by distances from
  the same point), combined by :class:`LocalizationLoss`, normalised by an EMA of the positive count.
* :func:`decode_segments`: per sample, top scores -> segments in seconds -> class-wise Soft-NMS or hard NMS
  (:mod:`visionkit.metrics.temporal_nms`) -> at most ``max_segments`` detections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.errors import check_choice
from visionkit.metrics.temporal_nms import batched_nms_1d, soft_nms_1d

__all__ = [
    "NMS_METHODS",
    "LocalizationLoss",
    "TemporalHead",
    "TemporalTargets",
    "assign_targets",
    "decode_segments",
    "diou_loss_1d",
    "sigmoid_focal_loss",
]

#: ``"soft"``: class-wise Gaussian Soft-NMS (ActionFormer, OpenTAD); ``"hard"``: class-wise greedy NMS.
NMS_METHODS = ("soft", "hard")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, L)`` at every step (ActionFormer's ``LayerNorm``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def _conv_stack(in_channels: int, width: int, layers: int, kernel_size: int) -> nn.Sequential:
    """``layers`` x (conv1d ``kernel_size`` -> channel LayerNorm -> ReLU); ``layers = 0``: identity."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Conv1d(in_channels if i == 0 else width, width, kernel_size, padding=kernel_size // 2),
                   ChannelLayerNorm(width), nn.ReLU(inplace=True)]
    return nn.Sequential(*blocks)


class TemporalHead(nn.Module):
    """ActionFormer-lite: a convolutional embedding shared by a classification and a regression branch.

    ``forward(features)``: ``(B, C, L)`` -> ``(logits (B, L, K), offsets (B, L, 2))``; offsets are the
    distances in steps from each step's centre to the segment start and end, ``relu(scale * conv)`` with a
    learned scale (init 1), as ActionFormer's head.

    Args:
        in_channels: feature channels ``C``.
        num_classes: action classes ``K``.
        width: channels of the embedding and of both branches.
        embed_layers: conv-norm-ReLU layers of the embedding (ActionFormer: 2 conv embeddings, kernel 3).
        head_layers: conv layers of each branch including the output conv (ActionFormer: 2 + output).
        kernel_size: temporal kernel (odd).
        prior: initial foreground probability of the classifier (bias ``-log((1 - p) / p)``; 0.01).
        dropout: dropout on the embedding output.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, embed_layers: int = 2,
                 head_layers: int = 2, kernel_size: int = 3, prior: float = 0.01, dropout: float = 0.0) -> None:
        super().__init__()
        if kernel_size % 2 != 1 or min(in_channels, num_classes, width, head_layers) < 1 or embed_layers < 0:
            raise ValueError(
                f"TemporalHead needs an odd kernel_size and positive sizes (embed_layers >= 0), got in_channels="
                f"{in_channels}, num_classes={num_classes}, width={width}, embed_layers={embed_layers}, "
                f"head_layers={head_layers}, kernel_size={kernel_size}")
        if not 0 < prior < 1:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        self.num_classes = num_classes
        self.embed = _conv_stack(in_channels, width, embed_layers, kernel_size)
        trunk = width if embed_layers else in_channels
        self.dropout = nn.Dropout(dropout)
        self.cls_tower = _conv_stack(trunk, width, head_layers - 1, kernel_size)
        self.reg_tower = _conv_stack(trunk, width, head_layers - 1, kernel_size)
        branch = width if head_layers > 1 else trunk
        self.cls_out = nn.Conv1d(branch, num_classes, kernel_size, padding=kernel_size // 2)
        self.reg_out = nn.Conv1d(branch, 2, kernel_size, padding=kernel_size // 2)
        self.scale = nn.Parameter(torch.ones(()))
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embed(features))
        logits = self.cls_out(self.cls_tower(x)).transpose(1, 2)
        offsets = F.relu(self.scale * self.reg_out(self.reg_tower(x))).transpose(1, 2)
        return logits, offsets


# ---- targets --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemporalTargets:
    """Per-step training targets of a batch.

    Attributes:
        classes: ``(B, L, K)`` float one-hot of the assigned segment's class (zeros on negative steps).
        offsets: ``(B, L, 2)`` distances in steps from the step's centre to the assigned segment's start
            and end (zeros on negative steps).
        positive: ``(B, L)`` bool, steps assigned to a segment.
    """

    classes: Tensor
    offsets: Tensor
    positive: Tensor


def assign_targets(segments: Sequence[Tensor], labels: Sequence[Tensor], num_steps: int, num_classes: int,
                   center_radius: float | None = 1.5) -> TemporalTargets:
    """ActionFormer's point assignment on one level of stride 1.

    Step ``i`` (centre ``c = i + 0.5``) is positive for a segment ``[s, e]`` when ``s < c < e`` and, with
    ``center_radius`` ``r``, also ``|c - (s + e) / 2| < r`` (centre sampling, cropped to the segment);
    among several such segments it takes the shortest (the first on ties).

    Args:
        segments: per sample, ``(K_i, 2)`` ``(start, end)`` in steps.
        labels: per sample, ``(K_i,)`` int64 classes in ``[0, num_classes)``.
        num_steps: ``L``.
        num_classes: ``K``.
        center_radius: centre-sampling radius in steps (ActionFormer: 1.5); ``None``: every step inside.

    Returns:
        :class:`TemporalTargets` on the device of the first segments tensor.
    """
    device = segments[0].device if len(segments) else torch.device("cpu")
    centres = torch.arange(num_steps, device=device, dtype=torch.float32) + 0.5
    classes = torch.zeros(len(segments), num_steps, num_classes, device=device)
    offsets = torch.zeros(len(segments), num_steps, 2, device=device)
    positive = torch.zeros(len(segments), num_steps, dtype=torch.bool, device=device)
    for b, (seg, lab) in enumerate(zip(segments, labels, strict=True)):
        if len(seg) == 0:
            continue
        seg = seg.to(device=device, dtype=torch.float32)
        start, end = seg[:, 0], seg[:, 1]
        left = centres[:, None] - start[None]  # (L, K_i)
        right = end[None] - centres[:, None]
        lo, hi = start, end
        if center_radius is not None:
            mid = (start + end) / 2
            lo, hi = torch.maximum(start, mid - center_radius), torch.minimum(end, mid + center_radius)
        inside = torch.minimum(centres[:, None] - lo[None], hi[None] - centres[:, None]) > 0
        length = torch.where(inside, (end - start)[None].expand_as(inside), torch.full_like(left, math.inf))
        best_length, best = length.min(1)
        pos = torch.isfinite(best_length)
        positive[b] = pos
        rows = torch.arange(num_steps, device=device)
        offsets[b] = torch.stack([left[rows, best], right[rows, best]], 1) * pos[:, None]
        classes[b, pos, lab.to(device)[best[pos]]] = 1.0
    return TemporalTargets(classes, offsets, positive)


# ---- losses ---------------------------------------------------------------------------------------------------
def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sum of the sigmoid focal loss (Lin et al. 2017) over all elements, in float32; ``alpha < 0``: no weighting."""
    logits, targets = logits.float(), targets.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-pair DIoU loss of 1-D segments given as distances ``(to start, to end)`` from the same point.

    ``1 - IoU + d^2 / c^2`` with ``d`` the distance between the two centres and ``c`` the length of the
    smallest segment enclosing both. ``pred``, ``target``: ``(N, 2)``, ``>= 0``. Returns ``(N,)`` float32.
    """
    pred, target = pred.float(), target.float()
    pl, pr, tl, tr = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    union = pl + pr + tl + tr - inter
    iou = inter / union.clamp_min(eps)
    enclosing = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    centre_gap = 0.5 * ((pr - pl) - (tr - tl))
    return 1 - iou + centre_gap.square() / enclosing.square().clamp_min(eps)


class LocalizationLoss(nn.Module):
    """ActionFormer's loss: ``(focal(cls) + reg_weight * sum DIoU(positive steps)) / N``.

    ``N`` is an exponential moving average of the number of positive steps per batch (momentum 0.9,
    updated only in train mode; the buffer ``normalizer`` starts at ``normalizer_init``: 100 on THUMOS).

    ``forward(logits (B, L, K), offsets (B, L, 2), targets)`` -> dict ``loss``, ``cls_loss``, ``reg_loss``
    (float32 scalars) and ``positives`` (the count of this batch).

    Args:
        reg_weight: weight of the regression term (1 on THUMOS, 2 on ActivityNet).
        alpha, gamma: focal-loss parameters.
        label_smoothing: targets ``t (1 - s) + s / (K + 1)`` (ActivityNet: 0.1).
        normalizer_init, momentum: the positive-count EMA.
    """

    def __init__(self, reg_weight: float = 1.0, alpha: float = 0.25, gamma: float = 2.0, label_smoothing: float = 0.0,
                 normalizer_init: float = 100.0, momentum: float = 0.9) -> None:
        super().__init__()
        if reg_weight < 0 or gamma < 0 or not 0 <= label_smoothing < 1 or normalizer_init <= 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"LocalizationLoss needs reg_weight >= 0, gamma >= 0, label_smoothing in [0, 1), normalizer_init > 0 "
                f"and momentum in [0, 1), got {reg_weight}, {gamma}, {label_smoothing}, {normalizer_init}, {momentum}")
        self.reg_weight, self.alpha, self.gamma = reg_weight, alpha, gamma
        self.label_smoothing, self.momentum = label_smoothing, momentum
        self.register_buffer("normalizer", torch.tensor(float(normalizer_init)))

    def forward(self, logits: Tensor, offsets: Tensor, targets: TemporalTargets) -> dict[str, Tensor]:
        positives = targets.positive.sum()
        if self.training:
            with torch.no_grad():
                self.normalizer.mul_(self.momentum).add_((1 - self.momentum) * positives.clamp_min(1).float())
        classes = targets.classes
        if self.label_smoothing:
            classes = classes * (1 - self.label_smoothing) + self.label_smoothing / (classes.shape[-1] + 1)
        cls_loss = sigmoid_focal_loss(logits, classes, self.alpha, self.gamma) / self.normalizer
        pos = targets.positive
        reg_loss = diou_loss_1d(offsets[pos], targets.offsets[pos]).sum() / self.normalizer
        return {"loss": cls_loss + self.reg_weight * reg_loss, "cls_loss": cls_loss, "reg_loss": reg_loss,
                "positives": positives}


# ---- decoding -------------------------------------------------------------------------------------------------
def decode_segments(
    logits: Tensor,
    offsets: Tensor,
    step_seconds: Tensor,
    durations: Tensor,
    pre_nms_topk: int = 2000,
    pre_nms_threshold: float = 1e-3,
    nms: Literal["soft", "hard"] = "soft",
    iou_threshold: float = 0.5,
    sigma: float = 0.7,
    min_score: float = 1e-3,
    max_segments: int = 100,
) -> list[dict[str, Tensor]]:
    """Detections of each sample, as :class:`~visionkit.metrics.TemporalActionMAP` takes them.

    Per sample: scores ``sigmoid(logits)`` above ``pre_nms_threshold``, the ``pre_nms_topk`` best
    (step, class) pairs, segments ``[c - d_start, c + d_end] * step_seconds`` clipped to ``[0, duration]``
    (empty ones dropped), then per class Soft-NMS (Gaussian, ``sigma``, scores below ``min_score`` dropped)
    or hard NMS (tIoU above ``iou_threshold`` suppressed), then the ``max_segments`` best.

    Args:
        logits: ``(B, L, K)``; offsets: ``(B, L, 2)`` in steps.
        step_seconds: ``(B,)`` seconds per step; durations: ``(B,)`` seconds.

    Returns:
        One dict per sample: ``segments`` ``(N, 2)`` float32 seconds, ``scores`` ``(N,)`` float32,
        ``labels`` ``(N,)`` int64, by decreasing score.
    """
    check_choice("nms", nms, NMS_METHODS)
    num_classes = logits.shape[-1]
    centres = torch.arange(logits.shape[1], device=logits.device, dtype=torch.float32) + 0.5
    out = []
    for b in range(len(logits)):
        scores = logits[b].float().sigmoid().flatten()
        keep = (scores > pre_nms_threshold).nonzero()[:, 0]
        if len(keep) > pre_nms_topk:
            keep = keep[scores[keep].topk(pre_nms_topk).indices]
        step, label = keep // num_classes, keep % num_classes
        dist = offsets[b].float()[step]
        seconds, duration = float(step_seconds[b]), float(durations[b])
        segs = torch.stack([centres[step] - dist[:, 0], centres[step] + dist[:, 1]], 1) * seconds
        segs = segs.clamp(0.0, duration)
        valid = segs[:, 1] > segs[:, 0]
        segs, score, label = segs[valid], scores[keep][valid], label[valid]
        if nms == "hard":
            kept = batched_nms_1d(segs, score, label, iou_threshold)
            segs, score, label = segs[kept], score[kept], label[kept]
        else:
            parts = []
            for c in label.unique().tolist():
                mask = label == c
                s, sc, _ = soft_nms_1d(segs[mask], score[mask], sigma=sigma, min_score=min_score,
                                       max_segments=max_segments)
                parts.append((s, sc, torch.full_like(sc, c, dtype=torch.long)))
            if parts:
                segs, score, label = (torch.cat(p) for p in zip(*parts, strict=True))
        order = torch.sort(score, descending=True, stable=True).indices[:max_segments]
        out.append({"segments": segs[order].float(), "scores": score[order].float(), "labels": label[order].long()})
    return out
