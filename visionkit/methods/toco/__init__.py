"""ToCo: Token Contrast for weakly-supervised semantic segmentation (Ru et al., CVPR 2023), pure-torch parts.

``ToCo`` is the network on a timm ViT (classifier and aux classifier with global max pooling,
LargeFOV decoder, CTC heads with an EMA teacher). The training pieces are functions:
``multi_scale_cam`` and ``cam_to_label`` (CAMs and their thresholds), ``token_labels``,
``affinity_mask`` and ``ptc_loss`` (patch token contrast), ``roi_mask``, ``sample_local_crops``,
``random_resized_crop`` and ``ctc_loss`` (class token contrast), ``PAR`` and
``refine_pseudo_labels`` (segmentation pseudo labels), ``balanced_seg_loss``, ``poly_warmup_factor`` (the
learning-rate schedule) and the optional ``DenseCRF``. ``ToCoTask`` is the Lightning task (training,
validation with four mIoUs, predict with ``ToCoPredictionWriter``).

Official bugs fixed (each module's docstring says how): the image box cut on the token grid in
pixel units (``token_labels(official_box=True)`` restores it), local crops taken from an
independently flipped image, and a NaN segmentation loss for batches without foreground.
"""

from visionkit.methods.toco.callbacks import ToCoPredictionWriter
from visionkit.methods.toco.cam import DEFAULT_SCALES, box_mask, cam_to_label, multi_scale_cam, normalise_cam
from visionkit.methods.toco.crf import CRFUnavailableError, DenseCRF
from visionkit.methods.toco.crops import LocalCrops, random_resized_crop, roi_mask, sample_local_crops
from visionkit.methods.toco.ctc import CTCHead, CTCHeads, ctc_loss
from visionkit.methods.toco.decoder import LargeFOV
from visionkit.methods.toco.errors import ToCoError
from visionkit.methods.toco.losses import balanced_seg_loss
from visionkit.methods.toco.model import ToCo, ToCoOutput
from visionkit.methods.toco.par import PAR
from visionkit.methods.toco.pseudo_labels import refine_pseudo_labels
from visionkit.methods.toco.ptc import affinity_mask, ptc_loss, token_labels
from visionkit.methods.toco.schedule import poly_warmup_factor
from visionkit.methods.toco.task import ToCoTask

__all__ = [
    "DEFAULT_SCALES",
    "PAR",
    "CRFUnavailableError",
    "CTCHead",
    "CTCHeads",
    "DenseCRF",
    "LargeFOV",
    "LocalCrops",
    "ToCo",
    "ToCoError",
    "ToCoOutput",
    "ToCoPredictionWriter",
    "ToCoTask",
    "affinity_mask",
    "balanced_seg_loss",
    "box_mask",
    "cam_to_label",
    "ctc_loss",
    "multi_scale_cam",
    "normalise_cam",
    "poly_warmup_factor",
    "ptc_loss",
    "random_resized_crop",
    "refine_pseudo_labels",
    "roi_mask",
    "sample_local_crops",
    "token_labels",
]
