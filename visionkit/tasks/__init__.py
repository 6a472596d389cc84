"""Baseline tasks that every method is measured against."""

from visionkit.tasks.classification import ClassificationTask, ClassifierBase
from visionkit.tasks.retrieval import RetrievalBase, RetrievalTask

__all__ = ["ClassificationTask", "ClassifierBase", "RetrievalBase", "RetrievalTask"]
