"""Metrics shared by tasks (torchmetrics ``Metric`` subclasses) and the functions behind them."""

from visionkit.metrics.retrieval import ImageTextRecall, image_text_recall
from visionkit.metrics.segmentation import SegmentationIoU, iou_from_confusion
from visionkit.metrics.temporal import (
    ACTIVITYNET_TIOU,
    THUMOS_TIOU,
    TemporalActionMAP,
    average_precision_at_tiou,
)
from visionkit.metrics.temporal_nms import batched_nms_1d, nms_1d, soft_nms_1d, temporal_iou

__all__ = [
    "ACTIVITYNET_TIOU",
    "THUMOS_TIOU",
    "ImageTextRecall",
    "SegmentationIoU",
    "TemporalActionMAP",
    "average_precision_at_tiou",
    "batched_nms_1d",
    "image_text_recall",
    "iou_from_confusion",
    "nms_1d",
    "soft_nms_1d",
    "temporal_iou",
]
