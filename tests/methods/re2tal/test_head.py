"""The ActionFormer-lite head: target assignment (centre sampling, shortest segment), focal and DIoU losses on
hand-computed values, the positive-count normaliser, decoding back to seconds, and the timeline images."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss as tv_focal

from visionkit.methods.re2tal import (
    LocalizationLoss,
    TemporalHead,
    assign_targets,
    decode_segments,
    diou_loss_1d,
    sigmoid_focal_loss,
    timeline_images,
)
from visionkit.methods.re2tal.timeline import BAND_ROWS, CLASS_COLOURS, GAP, LANE_ROWS, SCORE_ROWS
from visionkit.metrics import TemporalActionMAP

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_centre_sampling_and_the_shortest_segment_win() -> None:
    """Segment [2, 8] steps, class 1, radius 1.5: centre 5, sampling window (3.5, 6.5) -> steps 4 and 5 (centres
    4.5, 5.5). Without a radius steps 2..7. A shorter segment [4, 6] of class 0 takes the steps inside both."""
    seg, lab = [torch.tensor([[2.0, 8.0]])], [torch.tensor([1])]
    t = assign_targets(seg, lab, num_steps=10, num_classes=2, center_radius=1.5)
    assert t.positive[0].nonzero().flatten().tolist() == [4, 5]
    torch.testing.assert_close(t.offsets[0, 4], torch.tensor([2.5, 3.5]))
    assert t.classes[0, 4].tolist() == [0.0, 1.0] and t.classes[0, 3].sum() == 0 and t.offsets[0, 3].sum() == 0
    everywhere = assign_targets(seg, lab, 10, 2, center_radius=None)
    assert everywhere.positive[0].nonzero().flatten().tolist() == [2, 3, 4, 5, 6, 7]
    nested = assign_targets([torch.tensor([[2.0, 8.0], [4.0, 6.0]])], [torch.tensor([1, 0])], 10, 2, center_radius=None)
    assert nested.classes[0, 4].tolist() == [1.0, 0.0] and nested.classes[0, 2].tolist() == [0.0, 1.0]
    torch.testing.assert_close(nested.offsets[0, 5], torch.tensor([1.5, 0.5]))
    empty = assign_targets([torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)], 10, 2)
    assert not empty.positive.any()


def test_diou_and_focal_losses_on_known_values() -> None:
    """DIoU from a shared point: identical -> 0; (1, 1) vs (2, 2) -> IoU 0.5, same centre -> 0.5; (0, 2) vs (2, 0):
    no overlap, centres 2 apart in an enclosing length 4 -> 1 + 4/16 = 1.25. Focal = torchvision's (sum)."""
    pred = torch.tensor([[1.5, 2.0], [1.0, 1.0], [0.0, 2.0]])
    target = torch.tensor([[1.5, 2.0], [2.0, 2.0], [2.0, 0.0]])
    torch.testing.assert_close(diou_loss_1d(pred, target), torch.tensor([0.0, 0.5, 1.25]), atol=1e-6, rtol=0)
    logits, targets = torch.randn(4, 7, 3), (torch.rand(4, 7, 3) > 0.7).float()
    expected = tv_focal(logits, targets, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected, rtol=1e-5, atol=1e-6)


def test_loss_normaliser_is_an_ema_of_positives_updated_in_train_mode_only() -> None:
    head, loss = TemporalHead(8, 2, width=16), LocalizationLoss(normalizer_init=100.0)
    targets = assign_targets([torch.tensor([[2.0, 8.0]]), torch.tensor([[1.0, 3.0]])], [torch.tensor([1]), torch.tensor([0])],
                             12, 2, center_radius=None)
    logits, offsets = head(torch.randn(2, 8, 12))
    out = loss(logits, offsets, targets)
    assert int(out["positives"]) == 8 and float(loss.normalizer) == pytest.approx(0.9 * 100 + 0.1 * 8)
    torch.testing.assert_close(out["loss"], out["cls_loss"] + out["reg_loss"])
    out["loss"].backward()
    assert head.cls_out.weight.grad.abs().sum() > 0 and head.reg_out.weight.grad.abs().sum() > 0
    loss.eval()
    loss(logits.detach(), offsets.detach(), targets)
    assert float(loss.normalizer) == pytest.approx(90.8)


@pytest.mark.parametrize("nms", ["soft", "hard"])
def test_decoding_maps_a_confident_step_back_to_seconds(nms: str) -> None:
    """One confident (step 4, class 1) with distances (2.5, 3.5) at 0.5 s per step: the segment [1, 4] s, first;
    scored against that ground truth the mAP is 1 at every threshold."""
    logits = torch.full((2, 10, 2), -9.0)
    logits[0, 4, 1] = 5.0
    offsets = torch.zeros(2, 10, 2)
    offsets[0, 4] = torch.tensor([2.5, 3.5])
    found = decode_segments(logits, offsets, torch.tensor([0.5, 0.5]), torch.tensor([5.0, 5.0]), nms=nms)
    first = found[0]
    torch.testing.assert_close(first["segments"][0], torch.tensor([1.0, 4.0]))
    assert int(first["labels"][0]) == 1 and float(first["scores"][0]) == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    assert all(len(d["segments"]) == 0 for d in found[1:])  # sigmoid(-9) is below the pre-NMS threshold
    metric = TemporalActionMAP((0.5, 0.9), num_classes=2)
    metric.update(found, [{"segments": torch.tensor([[1.0, 4.0]]), "labels": torch.tensor([1])},
                          {"segments": torch.tensor([[0.5, 1.0]]), "labels": torch.tensor([1])}])
    assert float(metric.compute()["map@0.5"]) == pytest.approx(0.5)  # one of the two ground-truth segments found


def test_timeline_draws_ground_truth_and_detections_at_their_columns() -> None:
    """4 px per step, 0.5 s per step: ground truth [1, 2] s of class 2 covers columns 8-15 of the band; a
    detection of score 1 is drawn in full colour, one of score 0.5 half way to white."""
    probs = torch.zeros(1, 10, 3)
    probs[0, 3, 2] = 1.0
    found = [{"segments": torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "scores": torch.tensor([1.0, 0.5]),
              "labels": torch.tensor([2, 0])}]
    image = timeline_images(probs, torch.tensor([0.5]), [torch.tensor([[1.0, 2.0]])], [torch.tensor([2])], found, px=4)
    assert image.shape == (1, 3, image.shape[2], 40) and 0 <= float(image.min()) and float(image.max()) <= 1
    band = SCORE_ROWS + GAP
    colour = CLASS_COLOURS[2]
    torch.testing.assert_close(image[0, :, band + 1, 8], colour)
    torch.testing.assert_close(image[0, :, band + 1, 15], colour)
    assert not torch.allclose(image[0, :, band + 1, 16], colour) and not torch.allclose(image[0, :, band + 1, 7], colour)
    torch.testing.assert_close(image[0, :, SCORE_ROWS - 1, 12], colour)  # the score bar of step 3
    lane = band + BAND_ROWS + GAP
    torch.testing.assert_close(image[0, :, lane, 10], colour)
    torch.testing.assert_close(image[0, :, lane + LANE_ROWS + 1, 0], 1 - 0.5 * (1 - CLASS_COLOURS[0]))
