"""LightningDataModules of the dataset zoo (short class names resolve in the CLI)."""

from visionkit.data.datamodules.base import VisionDataModule
from visionkit.data.datamodules.captions import (
    CaptionCSVDataModule,
    CaptionDataModule,
    KarpathyDataModule,
    SyntheticCaptionsDataModule,
)
from visionkit.data.datamodules.digits import DigitsDataModule
from visionkit.data.datamodules.image_folder import ImageFolderDataModule
from visionkit.data.datamodules.medmnist import MedMNISTDataModule
from visionkit.data.datamodules.synth_rad import SynthRadDataModule
from visionkit.data.datamodules.synthetic_shapes import (
    SyntheticMultiShapesDataModule,
    SyntheticShapesDataModule,
)
from visionkit.data.datamodules.synthetic_video import MovingDigitsDataModule, SyntheticTALDataModule
from visionkit.data.datamodules.temporal_actions import TemporalActionDataModule
from visionkit.data.datamodules.video_base import VideoDataModule
from visionkit.data.datamodules.video_folder import VideoFolderDataModule
from visionkit.data.datamodules.voc import VOCSegmentationDataModule

__all__ = [
    "CaptionCSVDataModule",
    "CaptionDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "KarpathyDataModule",
    "MedMNISTDataModule",
    "MovingDigitsDataModule",
    "SynthRadDataModule",
    "SyntheticCaptionsDataModule",
    "SyntheticMultiShapesDataModule",
    "SyntheticShapesDataModule",
    "SyntheticTALDataModule",
    "TemporalActionDataModule",
    "VOCSegmentationDataModule",
    "VideoDataModule",
    "VideoFolderDataModule",
    "VisionDataModule",
]
