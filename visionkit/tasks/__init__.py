"""Baseline tasks that every method is measured against."""

from visionkit.tasks.classification import ClassificationTask
from visionkit.tasks.retrieval import RetrievalTask

__all__ = ["ClassificationTask", "RetrievalTask"]
