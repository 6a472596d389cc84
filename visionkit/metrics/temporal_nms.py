"""Temporal IoU and non-maximum suppression of 1-D segments (hard, class-aware and Soft-NMS), with the input
checks shared by the temporal action localization metrics of :mod:`visionkit.metrics.temporal`.

Segments are ``(N, 2)`` tensors of ``(start, end)`` in seconds (any unit works if all inputs share it),
``end >= start``. Everything is plain torch and runs on the device of its inputs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["batched_nms_1d", "nms_1d", "soft_nms_1d", "temporal_iou"]


# ---- validation helpers -----------------------------------------------------------------------------------
def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _check_segments(name: str, segments: object) -> None:
    """Raise a ValueError unless ``segments`` is a finite ``(N, 2)`` tensor with ``end >= start``."""
    if not isinstance(segments, Tensor) or segments.ndim != 2 or segments.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) tensor of (start, end) segments, got {_shape(segments)}")
    if segments.numel() == 0:
        return
    if segments.is_floating_point() and not bool(torch.isfinite(segments).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    bad = segments[:, 1] < segments[:, 0]
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} must have end >= start; segment {i} is {segments[i].tolist()}")


def _check_vector(name: str, x: object, n: int, of: str) -> None:
    """Raise a ValueError unless ``x`` is a 1-D tensor of length ``n`` (one entry per segment of ``of``)."""
    if not isinstance(x, Tensor) or x.ndim != 1 or len(x) != n:
        raise ValueError(
            f"{name} must be a 1-D tensor with one entry per segment of {of} ({n}), got {_shape(x)}"
        )


def _check_scores(name: str, scores: Tensor, n: int, of: str) -> None:
    _check_vector(name, scores, n, of)
    if not scores.is_floating_point() or not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} must be finite floating-point scores, got dtype {scores.dtype} or NaN/inf")


def _check_labels(name: str, labels: Tensor, n: int, of: str, num_classes: int | None = None) -> None:
    _check_vector(name, labels, n, of)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(labels.min())}")
    if n and num_classes is not None and int(labels.max()) >= num_classes:
        raise ValueError(f"{name} must be < num_classes ({num_classes}), got {int(labels.max())}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _as_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


# ---- temporal IoU and NMS ---------------------------------------------------------------------------------
def _tiou(a: Tensor, b: Tensor) -> Tensor:
    """``temporal_iou`` without the input checks."""
    dtype = torch.promote_types(_as_float(a).dtype, _as_float(b).dtype)
    a, b = a.to(dtype), b.to(dtype)
    start = torch.maximum(a[:, None, 0], b[None, :, 0])
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - start).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    positive = union > 0
    return torch.where(
        positive, inter / torch.where(positive, union, torch.ones_like(union)), torch.zeros_like(union)
    )


def temporal_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise temporal IoU of two sets of segments.

    Args:
        a: ``(N, 2)`` segments ``(start, end)`` in seconds, ``end >= start``.
        b: ``(M, 2)`` segments, same unit and device.

    Returns:
        ``(N, M)`` tIoU = overlap length / union length, in [0, 1], in the promoted floating dtype of the
        inputs (default float dtype for integer inputs). Segments that only touch have IoU 0; a pair whose
        union has length 0 (two points) has IoU 0, not NaN.
    """
    _check_segments("a", a)
    _check_segments("b", b)
    return _tiou(a, b)


def _greedy_keep(iou: Tensor, iou_threshold: float) -> Tensor:
    """Keep mask of greedy NMS over segments already sorted by decreasing score; ``iou`` is ``(N, N)``.

    Runs without host synchronisation: step ``i`` suppresses the later segments overlapping segment ``i``
    by more than the threshold, unless segment ``i`` was itself suppressed by an earlier one.
    """
    over = torch.triu(iou > iou_threshold, diagonal=1)
    removed = torch.zeros(iou.shape[0], dtype=torch.bool, device=iou.device)
    for i in range(iou.shape[0]):
        removed |= over[i] & ~removed[i]
    return ~removed


def nms_1d(segments: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy hard NMS of 1-D segments.

    Visits segments by decreasing score and drops every later one whose tIoU with a kept segment is
    strictly greater than ``iou_threshold`` (tIoU equal to the threshold is kept, as in torchvision).
    Equal scores are ordered by a stable sort: the segment with the smaller index comes first, so it is
    the one kept. Memory is ``O(N^2)``: cap ``N`` with a pre-NMS top-k.

    Args:
        segments: ``(N, 2)`` ``(start, end)`` in seconds.
        scores: ``(N,)`` confidence of each segment.
        iou_threshold: suppression threshold in [0, 1].

    Returns:
        ``(K,)`` int64 indices into ``segments`` of the kept segments, by decreasing score.
    """
    _check_segments("segments", segments)
    _check_scores("scores", scores, len(segments), "segments")
    _check_fraction("iou_threshold", iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = segments[order]
    return order[_greedy_keep(_tiou(ordered, ordered), iou_threshold)]


def batched_nms_1d(segments: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware ``nms_1d``: segments only suppress segments of their own label.

    Args:
        segments: ``(N, 2)`` ``(start, end)`` in seconds.
        scores: ``(N,)`` confidence of each segment.
        labels: ``(N,)`` integer class of each segment.
        iou_threshold: suppression threshold in [0, 1] (strictly greater tIoU is suppressed).

    Returns:
        ``(K,)`` int64 indices of the kept segments of all classes, by decreasing score (stable: equal
        scores keep index order).
    """
    _check_segments("segments", segments)
    _check_scores("scores", scores, len(segments), "segments")
    _check_labels("labels", labels, len(segments), "segments")
    _check_fraction("iou_threshold", iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered, lab = segments[order], labels[order]
    iou = _tiou(ordered, ordered)
    iou = torch.where(lab[:, None] == lab[None, :], iou, torch.zeros_like(iou))
    return order[_greedy_keep(iou, iou_threshold)]


def soft_nms_1d(
    segments: Tensor,
    scores: Tensor,
    sigma: float = 0.5,
    iou_threshold: float = 0.0,
    min_score: float = 1e-3,
    method: Literal["gaussian", "linear"] = "gaussian",
    max_segments: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017) of 1-D segments, as used by TAL decoders (ActionFormer, OpenTAD).

    Repeatedly selects the remaining segment with the highest (decayed) score (equal scores: smaller index
    first), removes it from the pool and decays the score of every other remaining segment by a weight of
    its tIoU with the selected one; a segment whose score is, or falls, below ``min_score`` is dropped.

    Args:
        segments: ``(N, 2)`` ``(start, end)`` in seconds.
        scores: ``(N,)`` confidence of each segment.
        sigma: width of the gaussian decay, weight ``exp(-iou**2 / sigma)``; smaller decays harder.
            Default 0.5 (ActionFormer uses 0.5 on THUMOS14 and 0.75 on ActivityNet; OpenTAD 0.5 or 0.7).
            Unused by ``"linear"``.
        iou_threshold: ``"linear"`` only: scores decay by ``(1 - iou)`` where ``iou > iou_threshold``, else
            they are untouched. Default 0. The gaussian decay applies at every overlap.
        min_score: scores below it are dropped (before the first selection too). Default 1e-3.
        method: ``"gaussian"`` (default) or ``"linear"``.
        max_segments: stop after selecting this many; ``None`` (default) runs until the pool is empty.

    Returns:
        ``(segments (K, 2), scores (K,), indices (K,) int64)`` of the selected segments in selection order;
        ``scores`` are the decayed scores at selection, non-increasing; ``indices`` point into the input.
    """
    _check_segments("segments", segments)
    _check_scores("scores", scores, len(segments), "segments")
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method must be 'gaussian' or 'linear', got {method!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    _check_fraction("iou_threshold", iou_threshold)
    if max_segments is not None and max_segments < 0:
        raise ValueError(f"max_segments must be None or >= 0, got {max_segments}")
    steps = len(segments) if max_segments is None else min(len(segments), max_segments)
    work = scores.clone()
    iou = _tiou(segments, segments).to(work.dtype)
    alive = work >= min_score
    neg_inf = torch.tensor(float("-inf"), dtype=work.dtype, device=work.device)
    picked: list[Tensor] = []
    picked_scores: list[Tensor] = []
    for _ in range(steps):
        if not bool(alive.any()):
            break
        i = torch.argmax(torch.where(alive, work, neg_inf))  # first of equal maxima
        picked.append(i)
        picked_scores.append(work[i])
        alive[i] = False
        row = iou[i]
        if method == "gaussian":
            weight = torch.exp(-(row * row) / sigma)
        else:
            weight = torch.where(row > iou_threshold, 1.0 - row, torch.ones_like(row))
        work = torch.where(alive, work * weight, work)
        alive &= work >= min_score
    if not picked:
        index = torch.zeros(0, dtype=torch.long, device=segments.device)
        return segments[index], scores[index], index
    index = torch.stack(picked)
    return segments[index], torch.stack(picked_scores), index
