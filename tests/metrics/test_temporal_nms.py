"""Temporal IoU and 1-D NMS: hand-computed tIoU cases, hard and class-aware NMS (threshold boundary, ties,
suppressed segments), and Soft-NMS decays (gaussian and linear). Floats are compared with an absolute
tolerance of 1e-6.
"""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.metrics.temporal_nms import batched_nms_1d, nms_1d, soft_nms_1d, temporal_iou

TOL = 1e-6


def seg(*pairs: tuple[float, float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(pairs, dtype=dtype).reshape(-1, 2)


# ---- temporal IoU -----------------------------------------------------------------------------------------
def test_temporal_iou_hand_cases():
    a = seg((0, 10), (0, 2), (0, 10), (0, 1), (2, 2))
    b = seg((0, 10), (5, 8), (1, 3), (2, 4), (1, 2), (2, 2))
    iou = temporal_iou(a, b)
    assert iou.shape == (5, 6) and iou.dtype == torch.float32
    assert iou[0, 0].item() == pytest.approx(1.0, abs=TOL)  # identical
    assert iou[1, 1].item() == 0.0  # disjoint
    assert iou[1, 2].item() == pytest.approx(1 / 3, abs=TOL)  # half of each overlaps: 1 / (2 + 2 - 1)
    assert iou[0, 3].item() == pytest.approx(0.2, abs=TOL)  # containment: 2 / 10
    assert iou[3, 4].item() == 0.0  # touching endpoints
    assert iou[4, 5].item() == 0.0 and not iou.isnan().any()  # two identical points: union 0, no NaN
    wide = temporal_iou(seg((0, 3), dtype=torch.float64), torch.tensor([[1, 4]]))  # float64 x int64
    assert wide.dtype == torch.float64 and wide.item() == pytest.approx(0.5, abs=1e-12)


def test_temporal_iou_rejects_malformed_segments():
    with pytest.raises(
        ValueError, match=r"a must be an \(N, 2\) tensor of \(start, end\) segments, got \(3,\)"
    ):
        temporal_iou(torch.zeros(3), seg((0, 1)))
    with pytest.raises(ValueError, match=r"b must have end >= start; segment 1 is \[5.0, 4.0\]"):
        temporal_iou(seg((0, 1)), seg((0, 1), (5, 4)))


# ---- NMS --------------------------------------------------------------------------------------------------
def test_nms_removes_overlapping_lower_score_and_keeps_disjoint():
    segments = seg((1, 11), (0, 10), (20, 30))
    keep = nms_1d(segments, torch.tensor([0.8, 0.9, 0.7]), iou_threshold=0.5)  # tIoU(0, 1) = 9 / 11
    assert keep.tolist() == [1, 2] and keep.dtype == torch.int64


def test_nms_threshold_boundary_and_suppressed_segments_do_not_suppress():
    half = seg((0, 10), (0, 5))  # tIoU exactly 0.5
    assert nms_1d(half, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]  # suppress only tIoU > threshold
    assert nms_1d(half, torch.tensor([0.9, 0.8]), 0.49).tolist() == [0]
    # chain: A suppresses B (tIoU 1/3); B would suppress C, but B is gone and A and C are disjoint
    chain = seg((0, 10), (5, 15), (10, 20))
    assert nms_1d(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_nms_ties_are_broken_by_index():
    same = seg((0, 10), (0, 10), (0, 10))
    assert nms_1d(same, torch.tensor([0.5, 0.5, 0.5]), 0.5).tolist() == [0]
    assert nms_1d(same, torch.tensor([0.5, 0.9, 0.5]), 0.5).tolist() == [1]
    disjoint = seg((0, 1), (2, 3), (4, 5), (6, 7))
    assert nms_1d(disjoint, torch.tensor([0.5, 0.7, 0.5, 0.5]), 0.5).tolist() == [1, 0, 2, 3]
    assert nms_1d(seg(), torch.zeros(0), 0.5).tolist() == []


def test_batched_nms_only_suppresses_within_a_class():
    segments = seg((0, 10), (0, 10), (1, 10), (30, 40))
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    keep = batched_nms_1d(segments, scores, torch.tensor([0, 1, 0, 1]), iou_threshold=0.5)
    assert keep.tolist() == [0, 1, 3]  # segment 2 overlaps segment 0 of its class; 1 is another class
    assert nms_1d(segments, scores, 0.5).tolist() == [0, 3]
    with pytest.raises(
        ValueError, match=r"labels must be a 1-D tensor with one entry per segment of segments \(4\)"
    ):
        batched_nms_1d(segments, scores, torch.tensor([0, 1]), 0.5)
    with pytest.raises(
        ValueError, match=r"scores must be a 1-D tensor with one entry per segment of segments \(4\)"
    ):
        nms_1d(segments, scores[:3], 0.5)


# ---- Soft-NMS ---------------------------------------------------------------------------------------------
SOFT_SEGMENTS = seg((0, 10), (0, 5), (20, 30))  # tIoU(0, 1) = 0.5, segment 2 disjoint from both
SOFT_SCORES = torch.tensor([0.9, 0.8, 0.7])


def test_soft_nms_gaussian_decays_overlaps_by_hand_computed_factor():
    segments, scores, index = soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, sigma=0.5)
    decayed = 0.8 * math.exp(-(0.5**2) / 0.5)  # 0.4852
    assert index.tolist() == [0, 2, 1]  # the decayed segment falls behind the untouched disjoint one
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, decayed]), atol=TOL, rtol=0)
    assert torch.equal(segments, SOFT_SEGMENTS[[0, 2, 1]])
    _, scores, index = soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, sigma=0.5, min_score=0.5)
    assert index.tolist() == [0, 2] and scores.tolist() == pytest.approx([0.9, 0.7], abs=TOL)
    assert soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, max_segments=2)[2].tolist() == [0, 2]
    _, scores, index = soft_nms_1d(SOFT_SEGMENTS, torch.tensor([0.9, 0.8, 1e-4]))  # below min_score at once
    assert index.tolist() == [0, 1]


def test_soft_nms_linear_decays_only_above_threshold():
    _, scores, index = soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, method="linear", iou_threshold=0.3)
    assert index.tolist() == [0, 2, 1] and scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * 0.5], abs=TOL)
    _, scores, index = soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, method="linear", iou_threshold=0.6)
    assert index.tolist() == [0, 1, 2] and scores.tolist() == pytest.approx([0.9, 0.8, 0.7], abs=TOL)
    # an identical segment gets weight 1 - 1 = 0 and is dropped
    _, _, index = soft_nms_1d(seg((0, 10), (0, 10)), torch.tensor([0.9, 0.8]), method="linear")
    assert index.tolist() == [0]
    empty = soft_nms_1d(seg(), torch.zeros(0))
    assert [tuple(t.shape) for t in empty] == [(0, 2), (0,), (0,)] and empty[2].dtype == torch.int64
    with pytest.raises(ValueError, match="method must be 'gaussian' or 'linear', got 'hard'"):
        soft_nms_1d(SOFT_SEGMENTS, SOFT_SCORES, method="hard")  # type: ignore[arg-type]
