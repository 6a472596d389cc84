"""Temporal action localization (TAL) metrics: ActivityNet-style average precision and mAP over tIoU
thresholds (temporal IoU and 1-D NMS / Soft-NMS live in :mod:`visionkit.metrics.temporal_nms`).

Segments are ``(start, end)`` pairs in seconds (any unit works if predictions and ground truth share it).
Everything is plain torch and runs on the device of its inputs; the AP arithmetic uses float64 (float32 on
MPS, which has no float64).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from visionkit.metrics.temporal_nms import _as_float, _check_labels, _check_scores, _check_segments, _tiou

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
]


# ---- average precision ------------------------------------------------------------------------------------
def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 for the AP arithmetic, except on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


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
