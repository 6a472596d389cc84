"""Datasets: one module each, every item a dict (``image`` float CHW in [0, 1], ``label``, optional ``mask``,
``index`` int64 position in the dataset, and ``path`` str for file datasets; caption datasets: ``caption``
and ``image_id`` instead of ``label``; :class:`UnlabelledImages`: no ``label``)."""

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.datasets.captions import CaptionCSV, CaptionDataset, KarpathyCaptions
from visionkit.data.datasets.decode import read_image
from visionkit.data.datasets.digits import Digits
from visionkit.data.datasets.image_folder import ImageFolder, UnlabelledImages
from visionkit.data.datasets.synthetic_captions import SyntheticCaptionedShapes
from visionkit.data.datasets.synthetic_shapes import SHAPES, SyntheticMultiShapes, SyntheticShapes

__all__ = [
    "SHAPES",
    "CaptionCSV",
    "CaptionDataset",
    "Digits",
    "ImageFolder",
    "KarpathyCaptions",
    "SyntheticCaptionedShapes",
    "SyntheticMultiShapes",
    "SyntheticShapes",
    "UnlabelledImages",
    "VisionDataset",
    "read_image",
]
