"""Lightning callbacks shared by every task."""

from visionkit.callbacks.checkpoint import RunCheckpoint
from visionkit.callbacks.images import ImageLogger
from visionkit.callbacks.memory import ActivationMemory
from visionkit.callbacks.params import ParameterReport
from visionkit.callbacks.predictions import PredictionWriter
from visionkit.callbacks.summary import RunSummary

__all__ = ["ActivationMemory", "ImageLogger", "ParameterReport", "PredictionWriter", "RunCheckpoint", "RunSummary"]
