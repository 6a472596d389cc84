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
from visionkit.data.datamodules.synthetic_shapes import (
    SyntheticMultiShapesDataModule,
    SyntheticShapesDataModule,
)

__all__ = [
    "CaptionCSVDataModule",
    "CaptionDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "KarpathyDataModule",
    "SyntheticCaptionsDataModule",
    "SyntheticMultiShapesDataModule",
    "SyntheticShapesDataModule",
    "VisionDataModule",
]
