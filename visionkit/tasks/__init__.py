"""Baseline tasks that every method is measured against."""

from visionkit.tasks.classification import ClassificationTask, ClassifierBase
from visionkit.tasks.retrieval import RetrievalBase, RetrievalTask
from visionkit.tasks.segmentation import SegmentationTask, SegmenterBase
from visionkit.tasks.video_classification import VideoClassificationTask

__all__ = ["ClassificationTask", "ClassifierBase", "RetrievalBase", "RetrievalTask", "SegmentationTask", "SegmenterBase", "VideoClassificationTask"]
