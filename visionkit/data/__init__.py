"""The dataset zoo: datasets return dict samples, datamodules wrap them for Lightning."""

from visionkit.data.errors import DatasetNotFoundError, ImageReadError

__all__ = ["DatasetNotFoundError", "ImageReadError"]
