"""Temporal action localization metrics: ActivityNet-protocol AP and mAP (tIoU and NMS are tested in
test_temporal_nms.py).

Hand-computed cases, a brute-force reference for the mAP on seeded random cases, and the DDP path of
``TemporalActionMAP`` (states gathered from two simulated ranks, ``merge_state``). Floats are compared with
an absolute tolerance of 1e-6 unless stated otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.metrics.temporal import (
    ACTIVITYNET_TIOU,
    THUMOS_TIOU,
    TemporalActionMAP,
    average_precision_at_tiou,
)

TOL = 1e-6


def seg(*pairs: tuple[float, float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(pairs, dtype=dtype).reshape(-1, 2)


def sample(segments, scores=None, labels=None) -> dict[str, torch.Tensor]:
    """One prediction (with ``scores``) or target dict; labels default to class 0."""
    s = seg(*segments)
    out = {
        "segments": s,
        "labels": torch.tensor(labels if labels is not None else [0] * len(s), dtype=torch.long),
    }
    if scores is not None:
        out["scores"] = torch.tensor(scores, dtype=torch.float32)
    return out


def run_map(preds, target, **kwargs) -> dict[str, torch.Tensor]:
    metric = TemporalActionMAP(**kwargs)
    metric.update(preds, target)
    return metric.compute()


# ---- mAP, hand-computed -----------------------------------------------------------------------------------
def test_perfect_detections_score_one_at_every_threshold():
    target = [sample([(0, 10), (20, 30)], labels=[0, 1]), sample([(5, 6)], labels=[1])]
    preds = [sample([(0, 10), (20, 30)], [0.9, 0.8], [0, 1]), sample([(5, 6)], [0.7], [1])]
    out = run_map(preds, target)
    assert sorted(out) == sorted(["map", "ap_per_class", "classes"] + [f"map@{t}" for t in THUMOS_TIOU])
    assert out["map"].item() == pytest.approx(1.0, abs=TOL)
    assert all(out[f"map@{t}"].item() == pytest.approx(1.0, abs=TOL) for t in THUMOS_TIOU)
    assert out["ap_per_class"].shape == (5, 2) and out["classes"].tolist() == [0, 1]


def test_shifted_detection_counts_up_to_its_tiou():
    # tIoU([2.5, 12.5], [0, 10]) = 7.5 / 12.5 = 0.6: a hit at 0.3, 0.4, 0.5, 0.6, a miss at 0.7
    out = run_map([sample([(2.5, 12.5)], [0.9])], [sample([(0, 10)])])
    assert out["ap_per_class"][:, 0].tolist() == pytest.approx([1, 1, 1, 1, 0], abs=TOL)
    assert out["map"].item() == pytest.approx(4 / 5, abs=TOL)
    assert out["map@0.6"].item() == pytest.approx(1.0, abs=TOL) and out["map@0.7"].item() == 0.0


def test_duplicate_detection_is_a_false_positive():
    one_gt = run_map([sample([(0, 10), (0, 10)], [0.9, 0.8])], [sample([(0, 10)])])
    assert one_gt["map"].item() == pytest.approx(1.0, abs=TOL)  # TP then FP: the FP adds no recall
    # two GTs, ranking TP, FP (duplicate), TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    two_gt = run_map([sample([(0, 10), (0, 10), (20, 30)], [0.9, 0.8, 0.7])], [sample([(0, 10), (20, 30)])])
    assert two_gt["map"].item() == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=TOL)


def test_precision_is_interpolated_from_the_right():
    # ranking FP, TP, TP with 2 GTs: precision 0, 1/2, 2/3; the step to recall 1/2 takes the 2/3 seen later
    out = run_map([sample([(50, 60), (0, 10), (20, 30)], [0.9, 0.8, 0.7])], [sample([(0, 10), (20, 30)])])
    assert out["map"].item() == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3, abs=TOL)


def test_missed_ground_truth_caps_recall():
    out = run_map([sample([(0, 10)], [0.9])], [sample([(0, 10), (20, 30)])])
    assert out["map"].item() == pytest.approx(0.5, abs=TOL)


def test_detection_matches_the_highest_unmatched_tiou():
    # GTs A = [0, 10], B = [1, 11] (tIoU 9/11 ~ 0.82). Both detections fit A best; the second falls back to B
    # at 0.5 but not at 0.9, where it is a false positive: AP 1 and 1/2.
    ap = average_precision_at_tiou(
        [seg((0, 10), (0, 10))], [torch.tensor([0.9, 0.8])], [seg((0, 10), (1, 11))], (0.5, 0.9)
    )
    assert ap.dtype == torch.float64 and ap.tolist() == pytest.approx([1.0, 0.5], abs=1e-12)
    # first detection fits B best (9/11 vs 7/13), second fits A (0.9): matching the first to the first GT
    # by index would leave the second without a partner above 0.5
    ap = average_precision_at_tiou(
        [seg((3, 13), (0, 9))], [torch.tensor([0.9, 0.8])], [seg((0, 10), (4, 14))], (0.5,)
    )
    assert ap.tolist() == pytest.approx([1.0], abs=1e-12)


def test_detections_never_match_ground_truth_of_another_video_or_class():
    target = [sample([(0, 10)]), sample([(30, 40)])]
    preds = [sample([], []), sample([(0, 10)], [0.9])]
    assert run_map(preds, target)["map"].item() == 0.0
    wrong_class = run_map([sample([(0, 10)], [0.9], [1])], [sample([(0, 10)], labels=[0])], num_classes=2)
    assert wrong_class["map"].item() == 0.0
    assert average_precision_at_tiou([seg()], [torch.zeros(0)], [seg((0, 1))]).tolist() == [0.0] * 5


def test_activitynet_thresholds():
    # tIoU([0, 8], [0, 10]) = 0.8: a hit at 0.5 and 0.75, a miss at 0.95
    out = run_map([sample([(0, 8)], [0.9])], [sample([(0, 10)])], tiou_thresholds=ACTIVITYNET_TIOU)
    assert [k for k in out if k.startswith("map@")] == ["map@0.5", "map@0.75", "map@0.95"]
    assert out["map"].item() == pytest.approx(2 / 3, abs=TOL) and out["map@0.95"].item() == 0.0


def test_class_without_ground_truth_is_nan_and_left_out():
    target = [sample([(0, 10), (20, 30)], labels=[0, 1])]
    preds = [sample([(0, 10), (20, 30), (40, 50)], [0.9, 0.8, 0.95], [0, 1, 2])]  # class 2: no GT
    out = run_map(preds, target, num_classes=4)
    ap = out["ap_per_class"]
    assert ap.shape == (5, 4) and ap[:, 2:].isnan().all() and not ap[:, :2].isnan().any()
    assert out["map"].item() == pytest.approx(1.0, abs=TOL)  # the class-2 detection is not counted anywhere
    seen = run_map(preds, target)  # no num_classes: the classes of the targets
    assert seen["classes"].tolist() == [0, 1] and seen["map"].item() == pytest.approx(1.0, abs=TOL)
    nothing = run_map([sample([(0, 1)], [0.5])], [sample([])])
    assert math.isnan(nothing["map"].item())
    assert math.isnan(average_precision_at_tiou([seg((0, 1))], [torch.tensor([0.5])], [seg()])[0].item())


def test_update_rejects_malformed_inputs():
    metric = TemporalActionMAP(num_classes=2)
    good_pred, good_target = sample([(0, 1)], [0.5]), sample([(0, 1)])
    cases = [
        (
            [{**good_pred, "segments": torch.zeros(1, 3)}],
            [good_target],
            r"preds\[0\]\['segments'\] must be an \(N, 2\)",
        ),
        ([good_pred], [sample([(2, 1)])], r"target\[0\]\['segments'\] must have end >= start"),
        (
            [{**good_pred, "scores": torch.ones(2)}],
            [good_target],
            r"preds\[0\]\['scores'\] must be a 1-D tensor",
        ),
        ([{**good_pred, "labels": torch.zeros(1)}], [good_target], r"preds\[0\]\['labels'\] must be integer"),
        ([good_pred], [sample([(0, 1)], labels=[2])], r"target\[0\]\['labels'\] must be < num_classes \(2\)"),
        ([good_pred], [{"segments": seg((0, 1))}], r"target\[0\] must have the key 'labels'"),
        ([good_pred, good_pred], [good_target], "preds and target must be lists with one dict per sample"),
    ]
    for preds, target, message in cases:
        with pytest.raises(ValueError, match=message):
            metric.update(preds, target)
    with pytest.raises(
        ValueError, match=r"tiou_thresholds must be a non-empty sequence of values in \(0, 1\]"
    ):
        TemporalActionMAP(tiou_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="num_classes must be None or a positive int"):
        TemporalActionMAP(num_classes=0)
    with pytest.raises(
        ValueError, match="pred_segments, pred_scores and gt_segments must have one entry per video"
    ):
        average_precision_at_tiou([seg()], [], [seg()])


# ---- mAP against a brute-force reference ------------------------------------------------------------------
def brute_tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def brute_ap(
    dets: list[tuple[int, float, float, float]], gts: list[tuple[int, float, float]], thr: float
) -> float:
    """ActivityNet AP written out: ``dets`` (video, start, end, score), ``gts`` (video, start, end)."""
    if not gts:
        return math.nan
    used: set[int] = set()
    hits = []
    for video, start, end, _ in sorted(dets, key=lambda d: -d[3]):  # sorted() is stable
        candidates = sorted(
            ((brute_tiou((start, end), (g[1], g[2])), j) for j, g in enumerate(gts) if g[0] == video),
            key=lambda c: -c[0],
        )
        hit = next((j for iou, j in candidates if iou >= thr and j not in used), None)
        if hit is not None:
            used.add(hit)
        hits.append(hit is not None)
    recall, precision, tp = [0.0], [0.0], 0
    for n, hit in enumerate(hits, start=1):
        tp += hit
        recall.append(tp / len(gts))
        precision.append(tp / n)
    recall.append(1.0)
    precision.append(0.0)
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum(
        (recall[i] - recall[i - 1]) * precision[i]
        for i in range(1, len(recall))
        if recall[i] != recall[i - 1]
    )


def random_case(seed: int, videos: int = 3, classes: int = 2):
    """Per video: 1-3 GTs, two jittered copies per GT (label flipped 1 time in 5), two random detections."""
    g = torch.Generator().manual_seed(seed)
    preds, target = [], []
    for _ in range(videos):
        k = int(torch.randint(1, 4, (1,), generator=g))
        start = torch.rand(k, generator=g) * 40
        gt = torch.stack([start, start + 2 + 8 * torch.rand(k, generator=g)], 1)
        gt_labels = torch.randint(0, classes, (k,), generator=g)
        source = torch.randint(0, k, (2 * k,), generator=g)
        jittered = gt[source] + 4 * (torch.rand(2 * k, 2, generator=g) - 0.5)
        labels = torch.where(
            torch.rand(2 * k, generator=g) < 0.2, (gt_labels[source] + 1) % classes, gt_labels[source]
        )
        noise = torch.rand(2, 2, generator=g) * 50
        segments = torch.cat([jittered, noise]).sort(dim=1).values
        labels = torch.cat([labels, torch.randint(0, classes, (2,), generator=g)])
        preds.append(
            {"segments": segments, "scores": torch.rand(len(segments), generator=g), "labels": labels}
        )
        target.append({"segments": gt, "labels": gt_labels})
    return preds, target


def brute_ap_table(preds, target, thresholds, classes: int = 2) -> list[list[float]]:
    table = []
    for thr in thresholds:
        row = []
        for c in range(classes):
            dets = [
                (v, *s, score)
                for v, p in enumerate(preds)
                for s, score, label in zip(
                    p["segments"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True
                )
                if label == c
            ]
            gts = [
                (v, *s)
                for v, t in enumerate(target)
                for s, label in zip(t["segments"].tolist(), t["labels"].tolist(), strict=True)
                if label == c
            ]
            row.append(brute_ap(dets, gts, thr))
        table.append(row)
    return table


@pytest.mark.parametrize("seed", range(6))
def test_map_matches_brute_force_reference(seed: int):
    preds, target = random_case(seed)
    thresholds = (0.1, 0.3, 0.5, 0.7)
    expected = torch.tensor(brute_ap_table(preds, target, thresholds), dtype=torch.float64)
    out = run_map(preds, target, tiou_thresholds=thresholds, num_classes=2)
    torch.testing.assert_close(out["ap_per_class"].double(), expected, atol=TOL, rtol=0, equal_nan=True)
    torch.testing.assert_close(out["map"].double(), expected.nanmean(1).mean(), atol=TOL, rtol=0)
    for c in range(2):
        per_video = [(p["segments"][p["labels"] == c], p["scores"][p["labels"] == c]) for p in preds]
        ap = average_precision_at_tiou(
            [s for s, _ in per_video],
            [s for _, s in per_video],
            [t["segments"][t["labels"] == c] for t in target],
            thresholds,
        )
        torch.testing.assert_close(ap, expected[:, c], atol=1e-9, rtol=0, equal_nan=True)


def test_brute_force_cases_are_not_trivial():
    """The random cases above reach APs strictly between 0 and 1 (partial matches, false positives)."""
    values = [
        v
        for seed in range(6)
        for row in brute_ap_table(*random_case(seed), (0.1, 0.3, 0.5, 0.7))
        for v in row
    ]
    assert sum(0.05 < v < 0.95 for v in values) >= 10


# ---- distributed state ------------------------------------------------------------------------------------
def two_rank_gather(rank1: TemporalActionMAP):
    """A ``dist_sync_fn`` for rank 0 of a simulated two-rank world whose rank 1 holds ``rank1``'s states.

    Records what rank 1 would send (torchmetrics' own pre-concatenation and empty-rank placeholder
    included), then answers each of rank 0's gathers with ``[rank 0's tensor, rank 1's tensor]``, checking
    what ``all_gather`` needs: the same number of collectives, and the same ndim and dtype on both ranks.
    """
    sent: list[torch.Tensor] = []
    rank1.sync(dist_sync_fn=lambda t, group=None: sent.append(t) or [t], distributed_available=lambda: True)
    rank1.unsync()
    queue = iter(sent)

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        theirs = next(queue)
        assert (theirs.ndim, theirs.dtype) == (tensor.ndim, tensor.dtype)
        return [tensor, theirs]

    return gather, queue


def ddp_map(rank0_data, rank1_data) -> dict[str, torch.Tensor]:
    rank1 = TemporalActionMAP(num_classes=2)
    if rank1_data[0]:
        rank1.update(*rank1_data)
    gather, queue = two_rank_gather(rank1)
    rank0 = TemporalActionMAP(num_classes=2, dist_sync_fn=gather, distributed_available_fn=lambda: True)
    rank0.update(*rank0_data)
    out = rank0.compute()
    assert next(queue, None) is None  # rank 1 issued no more collectives than rank 0
    return out


def test_gathered_states_from_two_ranks_equal_one_process():
    preds, target = random_case(7, videos=5)
    single = run_map(preds, target, num_classes=2)
    # unequal numbers of samples per rank, each sent as one tensor per state
    torch.testing.assert_close(
        ddp_map((preds[:3], target[:3]), (preds[3:], target[3:])), single, equal_nan=True
    )
    # a rank without any update sends torchmetrics' empty placeholder
    alone = run_map(preds[:3], target[:3], num_classes=2)
    torch.testing.assert_close(ddp_map((preds[:3], target[:3]), ([], [])), alone, equal_nan=True)
    # sample boundaries survive the gather: the rank-1 detection must not match rank 0's GT at the same time
    crossed = ddp_map(
        ([sample([], [])], [sample([(0, 10)])]), ([sample([(0, 10)], [0.9])], [sample([(30, 40)])])
    )
    assert crossed["map"].item() == 0.0


def test_merge_state_equals_one_process():
    preds, target = random_case(8, videos=4)
    first, second = TemporalActionMAP(num_classes=2), TemporalActionMAP(num_classes=2)
    first.update(preds[2:], target[2:])
    second.update(preds[:2], target[:2])
    first.merge_state(second)  # incoming samples go first
    torch.testing.assert_close(first.compute(), run_map(preds, target, num_classes=2), equal_nan=True)
