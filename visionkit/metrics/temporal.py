"""Temporal action localization (TAL) metrics: temporal IoU, 1-D NMS / Soft-NMS and ActivityNet-style mAP.

Segments are ``(start, end)`` pairs in seconds (any unit works if predictions and ground truth share it).
Everything is plain torch and runs on the device of its inputs; the AP arithmetic uses float64 (float32 on
MPS, which has no float64).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

THUMOS_TIOU: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
"""tIoU thresholds reported on THUMOS14; the mAP over them is the usual "average mAP"."""
ACTIVITYNET_TIOU: tuple[float, ...] = (0.5, 0.75, 0.95)
"""tIoU thresholds whose mAP ActivityNet-1.3 papers report one by one."""
ACTIVITYNET_AVG_TIOU: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""0.5:0.05:0.95, the ten thresholds behind ActivityNet's "average mAP"."""

__all__ = [
    "ACTIVITYNET_AVG_TIOU",
    "ACTIVITYNET_TIOU",
    "THUMOS_TIOU",
    "TemporalActionMAP",
    "average_precision_at_tiou",
    "batched_nms_1d",
    "nms_1d",
    "soft_nms_1d",
    "temporal_iou",
]


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


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 for the AP arithmetic, except on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


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


# ---- average precision ------------------------------------------------------------------------------------
def _match_video(
    ious: list[list[float]],
    candidates: list[list[int]],
    ranks: list[int],
    thresholds: Sequence[float],
    tp: list[list[bool]],
) -> None:
    """ActivityNet matching inside one video, detections in decreasing score order.

    ``ious[d]``/``candidates[d]``: tIoU with, and index of, the ground-truth segments in decreasing tIoU for
    detection ``d``; ``ranks[d]`` its position in the global ranking; sets ``tp[t][rank]`` for true positives.
    """
    num_gt = len(candidates[0]) if candidates else 0
    for flags, thr in zip(tp, thresholds, strict=True):
        matched = [False] * num_gt
        for row_iou, row_gt, rank in zip(ious, candidates, ranks, strict=True):
            for value, g in zip(row_iou, row_gt, strict=True):
                if value < thr:
                    break  # the remaining candidates overlap even less: false positive
                if not matched[g]:
                    matched[g] = True
                    flags[rank] = True
                    break


def _average_precision(
    pred_segments: Tensor,
    pred_scores: Tensor,
    pred_video: Tensor,
    gt_segments: Tensor,
    gt_video: Tensor,
    thresholds: Sequence[float],
) -> Tensor:
    """AP per threshold of one class from flat arrays with a video index per segment; ``(T,)``."""
    device = pred_segments.device
    acc = _acc_dtype(device)
    num_thr, num_gt, num_det = len(thresholds), len(gt_segments), len(pred_segments)
    if num_gt == 0:
        return torch.full((num_thr,), math.nan, dtype=acc, device=device)
    if num_det == 0:
        return torch.zeros(num_thr, dtype=acc, device=device)
    order = torch.sort(pred_scores, descending=True, stable=True).indices
    segs, video = pred_segments[order].to(acc), pred_video[order]
    # group by video, keeping the score order inside each video (matching never crosses videos)
    by_video = torch.sort(video, stable=True)
    det_videos, det_counts = torch.unique_consecutive(by_video.values, return_counts=True)
    gt_sorted = torch.sort(gt_video, stable=True)
    gt_segs = gt_segments[gt_sorted.indices].to(acc)
    gt_videos, gt_counts = torch.unique_consecutive(gt_sorted.values, return_counts=True)
    gt_ends = torch.cumsum(gt_counts, 0).tolist()
    gt_span = {
        v: (end - c, end) for v, c, end in zip(gt_videos.tolist(), gt_counts.tolist(), gt_ends, strict=True)
    }
    tp = [[False] * num_det for _ in thresholds]
    start = 0
    for v, count in zip(det_videos.tolist(), det_counts.tolist(), strict=True):
        ranks = by_video.indices[start : start + count]
        start += count
        if v not in gt_span:
            continue
        lo, hi = gt_span[v]
        iou, candidates = torch.sort(_tiou(segs[ranks], gt_segs[lo:hi]), dim=1, descending=True, stable=True)
        _match_video(iou.tolist(), candidates.tolist(), ranks.tolist(), thresholds, tp)
    hits = torch.tensor(tp, dtype=acc, device=device).cumsum(1)  # (T, D) true positives up to each rank
    precision = hits / torch.arange(1, num_det + 1, dtype=acc, device=device)
    recall = hits / num_gt
    envelope = precision.flip(1).cummax(1).values.flip(1)  # precision made non-increasing from the right
    steps = torch.diff(recall, dim=1, prepend=torch.zeros(num_thr, 1, dtype=acc, device=device))
    return (steps * envelope).sum(1)


def average_precision_at_tiou(
    pred_segments: Sequence[Tensor],
    pred_scores: Sequence[Tensor],
    gt_segments: Sequence[Tensor],
    tiou_thresholds: Sequence[float] = THUMOS_TIOU,
) -> Tensor:
    """Average precision of ONE class at each tIoU threshold, with ActivityNet's matching protocol.

    The detections of all videos are ranked by decreasing score (stable sort: equal scores keep the order
    of the videos in the lists, then their order inside the video). Going down the ranking, each
    detection is a true positive when a ground-truth segment of its own video that is not matched yet has
    tIoU >= threshold with it: it takes the one with the highest tIoU (ActivityNet's reference code visits
    the ground truth by decreasing tIoU and skips matched ones). Otherwise it is a false positive, so a
    second detection of an already matched segment counts as a false positive. AP is the area under the
    precision-recall curve with all-point interpolation (VOC 2010+ / ActivityNet): precision made
    non-increasing from the right, summed over the recall steps.

    Args:
        pred_segments: per video, ``(N_v, 2)`` detected ``(start, end)`` in seconds.
        pred_scores: per video, ``(N_v,)`` detection scores.
        gt_segments: per video, ``(K_v, 2)`` ground-truth segments; same number of videos as the predictions.
        tiou_thresholds: thresholds in (0, 1].

    Returns:
        ``(T,)`` AP per threshold in [0, 1] (float64, float32 on MPS): 0 where there are no detections,
        NaN where the class has no ground truth at all (``TemporalActionMAP`` leaves such classes out).
    """
    thresholds = _check_thresholds(tiou_thresholds)
    if not len(pred_segments) == len(pred_scores) == len(gt_segments):
        raise ValueError(
            "pred_segments, pred_scores and gt_segments must have one entry per video each, got "
            f"{len(pred_segments)}, {len(pred_scores)} and {len(gt_segments)}"
        )
    for i, (seg, score, gt) in enumerate(zip(pred_segments, pred_scores, gt_segments, strict=True)):
        _check_segments(f"pred_segments[{i}]", seg)
        _check_scores(f"pred_scores[{i}]", score, len(seg), f"pred_segments[{i}]")
        _check_segments(f"gt_segments[{i}]", gt)
    if not pred_segments:
        empty = torch.zeros(0, 2)
        return _average_precision(
            empty, empty[:, 0], empty[:, 0].long(), empty, empty[:, 0].long(), thresholds
        )
    device = pred_segments[0].device

    def video_of(parts: Sequence[Tensor]) -> Tensor:
        sizes = torch.tensor([len(part) for part in parts], device=device)
        return torch.repeat_interleave(torch.arange(len(parts), device=device), sizes)

    return _average_precision(
        _as_float(torch.cat(list(pred_segments))),
        torch.cat(list(pred_scores)),
        video_of(pred_segments),
        _as_float(torch.cat(list(gt_segments))),
        video_of(gt_segments),
        thresholds,
    )


def _check_thresholds(tiou_thresholds: Sequence[float]) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in tiou_thresholds)
    if not thresholds or not all(0.0 < t <= 1.0 for t in thresholds):
        raise ValueError(
            f"tiou_thresholds must be a non-empty sequence of values in (0, 1], got {tiou_thresholds}"
        )
    if len({f"{t:g}" for t in thresholds}) != len(thresholds):
        raise ValueError(f"tiou_thresholds must be distinct, got {tiou_thresholds}")
    return thresholds


# ---- torchmetrics metric ----------------------------------------------------------------------------------
class TemporalActionMAP(Metric):
    """Mean average precision of temporal action localization over tIoU thresholds (ActivityNet protocol).

    ``update(preds, target)`` takes one dict per video (sample), in the style of torchmetrics'
    ``MeanAveragePrecision``:

    - ``preds[i]``: ``segments`` ``(N, 2)`` ``(start, end)`` in seconds, ``scores`` ``(N,)``,
      ``labels`` ``(N,)`` int64;
    - ``target[i]``: ``segments`` ``(K, 2)``, ``labels`` ``(K,)`` int64.

    Detections only match ground truth of their own sample and class (see ``average_precision_at_tiou``).

    ``compute()`` returns a dict of tensors:

    - ``map``: the mean over thresholds of the per-threshold mAP (the "average mAP" of THUMOS14 papers);
    - ``map@{t:g}`` for each threshold, e.g. ``map@0.3``, ``map@0.75``: mean AP over classes;
    - ``ap_per_class``: ``(T, C)`` AP of each threshold and class, NaN for a class without ground truth;
      such classes are left out of every mean (their detections cannot be scored);
    - ``classes``: ``(C,)`` the class of each column: ``range(num_classes)`` when given, else the labels seen
      in the targets (sorted).

    With no ground truth at all the means are NaN. Values are in [0, 1].

    Args:
        tiou_thresholds: tIoU thresholds in (0, 1]; ``THUMOS_TIOU`` (default), ``ACTIVITYNET_TIOU`` or
            ``ACTIVITYNET_AVG_TIOU``.
        num_classes: number of classes; labels must then be below it. ``None``: the classes are those of the
            targets, and predicted labels absent from the targets are ignored.
        kwargs: ``torchmetrics.Metric`` options.

    States are stored in the metric's dtype: float32 by default, which resolves times below 2 h to about
    1 ms and labels below 2**24 exactly; ``set_dtype(torch.float64)`` stores float64. Equal scores in
    different samples are ranked in accumulation order, which under DDP depends on how the samples are
    spread over the ranks (gathered rank by rank); equal scores inside one sample keep their order. Note that
    torchmetrics squeezes one-element outputs to 0-d (one threshold and one class).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    # DDP: torchmetrics 1.9 gathers a list state with ``dist_reduce_fx=None`` one list element at a time
    # (``_sync_dist`` runs ``gather_all_tensors`` per element and flattens the result), so one tensor per
    # sample would survive the gather, but every rank must then hold the same number of samples (else the
    # per-element collectives mismatch and hang) and it costs two collectives per sample and state. We use
    # ``dist_reduce_fx="cat"`` instead: each rank concatenates its list into one tensor, which is gathered
    # in rank order whatever its length. Sample boundaries survive through the ``counts`` state, one
    # ``(num_preds, num_targets)`` row per sample, gathered in the same rank order as the rows themselves,
    # so detections still only match ground truth of their own sample. All states are 1-D and in the metric
    # dtype: ``gather_all_tensors`` needs the same ndim on every rank, and torchmetrics gives a rank
    # without updates an empty 1-D placeholder in ``self.dtype``. ``merge_state`` (list concatenation)
    # keeps the rows of the three states aligned as well.

    def __init__(
        self, tiou_thresholds: Sequence[float] = THUMOS_TIOU, num_classes: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.tiou_thresholds = _check_thresholds(tiou_thresholds)
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        # one tensor per sample in each list: rows (start, end, score, label) and (start, end, label),
        # flattened, and (num_preds, num_targets)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    @staticmethod
    def _field(sample: object, name: str, key: str) -> Tensor:
        if not isinstance(sample, Mapping):
            raise ValueError(f"{name} must be a dict of tensors, got {type(sample).__name__}")
        if key not in sample:
            raise ValueError(f"{name} must have the key '{key}', got keys {sorted(sample)}")
        return sample[key]

    def update(self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]) -> None:
        """Add samples: ``preds``/``target`` hold one dict per sample (keys in the class docstring)."""
        if not isinstance(preds, Sequence) or not isinstance(target, Sequence) or len(preds) != len(target):
            raise ValueError(
                "preds and target must be lists with one dict per sample, of the same length; got "
                f"{type(preds).__name__} of {len(preds) if isinstance(preds, Sequence) else '?'} and "
                f"{type(target).__name__} of {len(target) if isinstance(target, Sequence) else '?'}"
            )
        for i, (p, t) in enumerate(zip(preds, target, strict=True)):
            seg, score, label = (self._field(p, f"preds[{i}]", k) for k in ("segments", "scores", "labels"))
            gt_seg, gt_label = (self._field(t, f"target[{i}]", k) for k in ("segments", "labels"))
            _check_segments(f"preds[{i}]['segments']", seg)
            _check_scores(f"preds[{i}]['scores']", score, len(seg), f"preds[{i}]['segments']")
            _check_labels(
                f"preds[{i}]['labels']", label, len(seg), f"preds[{i}]['segments']", self.num_classes
            )
            _check_segments(f"target[{i}]['segments']", gt_seg)
            _check_labels(
                f"target[{i}]['labels']", gt_label, len(gt_seg), f"target[{i}]['segments']", self.num_classes
            )
            like = {"device": self.device, "dtype": self.dtype}
            self.preds.append(
                torch.cat([seg.to(**like), score.to(**like)[:, None], label.to(**like)[:, None]], 1).flatten()
            )
            self.targets.append(torch.cat([gt_seg.to(**like), gt_label.to(**like)[:, None]], 1).flatten())
            self.counts.append(torch.tensor([len(seg), len(gt_seg)], **like))

    def _rows(self, state: list[Tensor] | Tensor, width: int) -> Tensor:
        if isinstance(state, list) and not state:
            return torch.zeros(0, width, device=self.device, dtype=self.dtype)
        return dim_zero_cat(state).reshape(-1, width)

    def compute(self) -> dict[str, Tensor]:
        """The dict described in the class docstring."""
        preds, targets = self._rows(self.preds, 4), self._rows(self.targets, 3)
        counts = self._rows(self.counts, 2).long()
        device = preds.device
        if int(counts[:, 0].sum()) != len(preds) or int(counts[:, 1].sum()) != len(targets):
            raise RuntimeError(
                "TemporalActionMAP states are out of step: counts do not add up to the stored rows"
            )
        samples = torch.arange(len(counts), device=device)
        pred_sample = torch.repeat_interleave(samples, counts[:, 0])
        gt_sample = torch.repeat_interleave(samples, counts[:, 1])
        pred_label, gt_label = preds[:, 3].long(), targets[:, 2].long()
        if self.num_classes is not None:
            classes = torch.arange(self.num_classes, device=device)
        else:
            classes = torch.unique(gt_label)
        acc = _acc_dtype(device)
        ap = torch.full((len(self.tiou_thresholds), len(classes)), math.nan, dtype=acc, device=device)
        for column, c in enumerate(classes.tolist()):
            p, g = pred_label == c, gt_label == c
            ap[:, column] = _average_precision(
                preds[p, :2], preds[p, 2], pred_sample[p], targets[g, :2], gt_sample[g], self.tiou_thresholds
            )
        per_threshold = ap.nanmean(1)  # classes without ground truth are NaN: left out; none at all: NaN
        out = {"map": per_threshold.mean().to(self.dtype)}
        for t, value in zip(self.tiou_thresholds, per_threshold, strict=True):
            out[f"map@{t:g}"] = value.to(self.dtype)
        out["ap_per_class"] = ap.to(self.dtype)
        out["classes"] = classes
        return out
