"""Metrics shared by tasks (torchmetrics ``Metric`` subclasses)."""

from visionkit.metrics.retrieval import ImageTextRecall, image_text_recall

__all__ = ["ImageTextRecall", "image_text_recall"]
