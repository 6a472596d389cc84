"""Baseline tasks that every method is measured against."""

from visionkit.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
