"""SegmentationIoU: dataset-level mIoU from one confusion matrix, in the official (VOC / ToCo) convention and in
torchmetrics' (checked against ``MulticlassJaccardIndex`` on seeded random maps), the spec's counter-example
where they differ (ToCo spec §5 oracle 14), DDP-style merging, and one-line input errors."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from visionkit.metrics import SegmentationIoU, iou_from_confusion


def random_maps(seed: int, num_classes: int, shape=(3, 17, 19), ignore_share: float = 0.1, skip=()):
    """Seeded ``(preds, target)`` label maps; ``target`` has ~``ignore_share`` 255 pixels and none of ``skip``."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=gen)
    for c in skip:
        target[target == c] = (c + 1) % num_classes
    target[torch.rand(shape, generator=gen) < ignore_share] = 255
    preds = torch.randint(0, num_classes, shape, generator=gen)
    return preds, target


def run(preds, target, num_classes: int, **kwargs) -> dict[str, torch.Tensor]:
    metric = SegmentationIoU(num_classes, **kwargs)
    metric.update(preds, target)
    return metric.compute()


def reference_jaccard(batches, num_classes: int) -> float:
    ref = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=255, average="macro")
    for preds, target in batches:
        ref.update(preds, target)
    return float(ref.compute())


def test_counter_example_official_excludes_a_class_absent_from_the_ground_truth() -> None:
    target = torch.tensor([[[0, 0, 1, 1]]])
    preds = torch.tensor([[[0, 2, 1, 1]]])
    official = run(preds, target, 3)
    tm = run(preds, target, 3, convention="torchmetrics")
    assert float(official["miou"]) == pytest.approx(0.75)  # mean(1/2, 2/2): class 2 has no GT pixel
    assert float(tm["miou"]) == pytest.approx(0.5)  # mean(1/2, 2/2, 0/1)
    assert float(tm["miou"]) == pytest.approx(reference_jaccard([(preds, target)], 3))
    assert math.isnan(float(official["iou/2"])) and float(tm["iou/2"]) == 0.0
    assert float(official["iou/0"]) == pytest.approx(0.5) and float(official["iou/1"]) == 1.0
    assert float(official["pixel_acc"]) == pytest.approx(0.75)
    assert sorted(official) == ["iou/0", "iou/1", "iou/2", "miou", "pixel_acc"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_conventions_equal_torchmetrics_when_every_class_is_in_the_ground_truth(seed: int) -> None:
    batches = [random_maps(seed * 10 + i, 6) for i in range(3)]
    official, tm = SegmentationIoU(6), SegmentationIoU(6, convention="torchmetrics")
    confmat = MulticlassConfusionMatrix(num_classes=6, ignore_index=255)
    for preds, target in batches:
        official.update(preds, target)
        tm.update(preds, target)
        confmat.update(preds, target)
    assert torch.equal(official.confusion, confmat.compute().long())
    expected = reference_jaccard(batches, 6)
    assert float(official.compute()["miou"]) == pytest.approx(expected, abs=1e-6)
    assert float(tm.compute()["miou"]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_predicted_but_absent_classes_split_the_conventions(seed: int) -> None:
    preds, target = random_maps(seed, 5, skip=(1, 3))  # classes 1 and 3 predicted, never in the GT
    tm = run(preds, target, 5, convention="torchmetrics")
    official = run(preds, target, 5)
    assert float(tm["miou"]) == pytest.approx(reference_jaccard([(preds, target)], 5), abs=1e-6)
    counted = target != 255
    ious = []
    for c in (0, 2, 4):
        inter = ((preds == c) & (target == c) & counted).sum()
        union = (((preds == c) & counted) | (target == c)).sum()
        ious.append(float(inter / union))
        assert float(official[f"iou/{c}"]) == pytest.approx(ious[-1], abs=1e-6)
    assert float(official["miou"]) == pytest.approx(sum(ious) / 3, abs=1e-6)
    assert float(tm["miou"]) == pytest.approx(sum(ious) / 5, abs=1e-6)  # classes 1 and 3 count as 0
    assert math.isnan(float(official["iou/1"])) and float(tm["iou/1"]) == 0.0


def test_scores_are_reduced_by_argmax_and_ignored_pixels_do_not_count() -> None:
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 4, 8, 8, generator=gen)
    target = torch.randint(0, 4, (2, 8, 8), generator=gen)
    target[:, :2] = 255
    from_scores, from_labels = SegmentationIoU(4), SegmentationIoU(4)
    from_scores.update(scores, target)
    from_labels.update(scores.argmax(1), target)
    assert torch.equal(from_scores.confusion, from_labels.confusion)
    assert int(from_scores.confusion.sum()) == 2 * 6 * 8
    labels = scores.argmax(1)
    correct = ((labels == target) & (target != 255)).sum() / (target != 255).sum()
    assert float(from_scores.compute()["pixel_acc"]) == pytest.approx(float(correct))


def test_uint8_maps_count_in_the_right_cell() -> None:
    target = torch.tensor([[[20, 255, 0]]], dtype=torch.uint8)  # 20 * 21 overflows uint8
    out = SegmentationIoU(21)
    out.update(torch.tensor([[[20, 3, 0]]], dtype=torch.uint8), target)
    assert int(out.confusion[20, 20]) == 1 and int(out.confusion[0, 0]) == 1 and int(out.confusion.sum()) == 2


def test_merged_instances_equal_one_instance_in_any_order() -> None:
    batches = [random_maps(40 + i, 5, skip=(4,) if i else ()) for i in range(4)]
    whole, rank0, rank1, reversed_order = (SegmentationIoU(5) for _ in range(4))
    for preds, target in batches:
        whole.update(preds, target)
    for preds, target in batches[::-1]:
        reversed_order.update(preds, target)
    for preds, target in batches[:1]:
        rank0.update(preds, target)
    for preds, target in batches[1:]:
        rank1.update(preds, target)
    assert torch.equal(rank0.confusion + rank1.confusion, whole.confusion)  # what the DDP "sum" reduce does
    rank0.merge_state(rank1)
    single = {k: float(v) for k, v in whole.compute().items()}
    assert {k: float(v) for k, v in rank0.compute().items()} == pytest.approx(single)
    assert {k: float(v) for k, v in reversed_order.compute().items()} == pytest.approx(single)
    assert whole._reductions["confusion"].__name__ == "dim_zero_sum"


def test_class_names_empty_metric_and_ignore_index_as_a_class() -> None:
    metric = SegmentationIoU(3, class_names=["background", "cat", "dog"])
    with pytest.warns(UserWarning, match="called before the ``update``"):
        out = metric.compute()
    assert sorted(out) == ["iou/background", "iou/cat", "iou/dog", "miou", "pixel_acc"]
    assert math.isnan(float(out["miou"])) and math.isnan(float(out["pixel_acc"]))
    # ignore_index 0 skips background pixels and leaves class 0 out of both means, as torchmetrics does
    preds, target = random_maps(7, 4, ignore_share=0.0)
    for convention in ("official", "torchmetrics"):
        ours = run(preds, target, 4, ignore_index=0, convention=convention)
        ref = MulticlassJaccardIndex(num_classes=4, ignore_index=0, average="macro")
        assert float(ours["miou"]) == pytest.approx(float(ref(preds, target)), abs=1e-6)
        assert math.isnan(float(ours["iou/0"]))


def test_iou_from_confusion_on_a_hand_matrix() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # rows GT, columns prediction
    iou, miou = iou_from_confusion(confusion)
    assert iou[:2].tolist() == pytest.approx([3 / 4, 2 / 3]) and math.isnan(float(iou[2]))
    assert float(miou) == pytest.approx((3 / 4 + 2 / 3) / 2)
    _, empty = iou_from_confusion(torch.zeros(2, 2, dtype=torch.int64), "torchmetrics")
    assert math.isnan(float(empty))
    with pytest.raises(ValueError, match=r"square \(C, C\)"):
        iou_from_confusion(torch.zeros(2, 3))


def test_bad_labels_and_shapes_raise_one_line() -> None:
    metric = SegmentationIoU(21)
    with pytest.raises(ValueError, match=r"^target holds labels \[21, 40\] outside \[0, 20\] \(num_classes=21\); "
                       r"expected class labels or the ignore_index 255$"):
        metric.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.tensor([[[0, 40, 255], [21, 40, 3]]]))
    with pytest.raises(ValueError, match=r"^preds hold labels \[-1, 255\] outside \[0, 20\]"):
        metric.update(torch.tensor([[[0, 255, -1]]]), torch.tensor([[[0, 255, 1]]]))
    assert int(metric.confusion.sum()) == 0  # nothing counted from the rejected batches
    with pytest.raises(ValueError, match=r"must be labels shaped like target \(1, 2, 2\).* got \(1, 2, 3\)"):
        metric.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_classes=21, H, W\) matching target \(1, 2, 2\), got \(1, 5, 2, 2\)"):
        metric.update(torch.zeros(1, 5, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="label preds must be integers, got dtype torch.float32"):
        metric.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="target must hold integer class labels"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"target holds labels \[255\]"):
        SegmentationIoU(3, ignore_index=None).update(torch.zeros(1, 1, 1, dtype=torch.long), torch.full((1, 1, 1), 255))
    with pytest.raises(ValueError, match="convention must be 'official' or 'torchmetrics', got 'voc'"):
        SegmentationIoU(3, convention="voc")
    with pytest.raises(ValueError, match="class_names must hold num_classes=3 names, got 2"):
        SegmentationIoU(3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        SegmentationIoU(0)


def test_synced_confusion_from_two_ranks_equals_one_process() -> None:
    """Rank 0's ``compute`` after torchmetrics' sync (a simulated 2-rank all_gather): the summed confusion matrix
    gives the whole set's mIoU, per-class IoU included; a rank without updates contributes zeros."""
    preds, target = random_maps(3, num_classes=4)
    whole = run(preds, target, num_classes=4)
    for split in (2, 0):
        rank1 = SegmentationIoU(4)
        rank1.update(preds[split:], target[split:])

        def gather(tensor: torch.Tensor, group=None, theirs=rank1.confusion) -> list[torch.Tensor]:
            assert (tensor.shape, tensor.dtype) == (theirs.shape, theirs.dtype)
            return [tensor, theirs.clone()]

        rank0 = SegmentationIoU(4, dist_sync_fn=gather, distributed_available_fn=lambda: True)
        if split:
            rank0.update(preds[:split], target[:split])
        synced = rank0.compute()
        assert synced.keys() == whole.keys()
        for key in whole:
            torch.testing.assert_close(synced[key], whole[key], equal_nan=True)
