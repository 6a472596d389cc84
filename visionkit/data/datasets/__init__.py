"""Datasets: one module each, every item a dict (``image`` float CHW in [0, 1], ``label``, optional ``mask``,
``index`` int64 position in the dataset, and ``path`` str for file datasets; caption datasets: ``caption``
and ``image_id`` instead of ``label``; :class:`UnlabelledImages`: no ``label``; video datasets: ``video`` float
``(T, C, H, W)`` and the fields of :mod:`visionkit.data.datasets.video_base`)."""

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.datasets.captions import CaptionCSV, CaptionDataset, KarpathyCaptions
from visionkit.data.datasets.decode import read_image
from visionkit.data.datasets.digits import Digits
from visionkit.data.datasets.image_folder import ImageFolder, UnlabelledImages
from visionkit.data.datasets.medmnist import MedMNIST, MedMNISTFileError
from visionkit.data.datasets.moving_digits import MovingDigits
from visionkit.data.datasets.synth_rad import SynthRad
from visionkit.data.datasets.synthetic_captions import SyntheticCaptionedShapes
from visionkit.data.datasets.synthetic_shapes import SHAPES, SyntheticMultiShapes, SyntheticShapes
from visionkit.data.datasets.synthetic_tal import SyntheticTAL
from visionkit.data.datasets.tal_annotations import VideoAnnotation, read_activitynet_json
from visionkit.data.datasets.temporal_actions import TemporalActionFeatures, TemporalActionVideos
from visionkit.data.datasets.video_base import VideoDataset
from visionkit.data.datasets.video_folder import VideoFolder
from visionkit.data.datasets.video_sources import FrameFolder, VideoFile, VideoSource, open_video
from visionkit.data.datasets.voc import (
    VOC_CLASSES,
    VOC_FOREGROUND,
    VOCFileError,
    VOCSegmentation,
    colorize,
    voc_palette,
)

__all__ = [
    "SHAPES",
    "VOC_CLASSES",
    "VOC_FOREGROUND",
    "CaptionCSV",
    "CaptionDataset",
    "FrameFolder",
    "Digits",
    "ImageFolder",
    "KarpathyCaptions",
    "MedMNIST",
    "MedMNISTFileError",
    "MovingDigits",
    "SynthRad",
    "SyntheticCaptionedShapes",
    "SyntheticMultiShapes",
    "SyntheticShapes",
    "SyntheticTAL",
    "TemporalActionFeatures",
    "TemporalActionVideos",
    "UnlabelledImages",
    "VOCFileError",
    "VOCSegmentation",
    "VideoAnnotation",
    "VideoDataset",
    "VideoFile",
    "VideoFolder",
    "VideoSource",
    "VisionDataset",
    "colorize",
    "open_video",
    "read_activitynet_json",
    "read_image",
    "voc_palette",
]
