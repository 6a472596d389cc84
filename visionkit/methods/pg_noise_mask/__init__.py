"""Policy-gradient noise masks (Yavuz & Yang, 2024): a policy draws Beta noise per grid cell, the upsampled,
blurred mask multiplies the classifier's normalised input, and one joint loss trains both networks.

``NoisePolicy`` is the policy (timm trunk, two MLP heads, EMA prior buffers), ``sample_cells`` /
``beta_log_prob`` / ``random_cells`` the Beta cells, ``cells_to_mask`` / ``apply_mask`` the mask
geometry, ``faithful_loss`` (official, default) / ``reinforce_loss`` (corrected) /
``random_ce_scale`` the losses, and ``NoiseMasker`` glues them for one training arm.
"""

from visionkit.methods.pg_noise_mask.losses import faithful_loss, random_ce_scale, reinforce_loss
from visionkit.methods.pg_noise_mask.masks import (
    EPS,
    PGNoiseMaskError,
    apply_mask,
    beta_log_prob,
    cells_to_mask,
    gaussian_kernel1d,
    random_cells,
    sample_cells,
)
from visionkit.methods.pg_noise_mask.model import ESTIMATORS, MaskDraw, NoiseMasker, mask_stats
from visionkit.methods.pg_noise_mask.policy import NoisePolicy

__all__ = [
    "EPS",
    "ESTIMATORS",
    "MaskDraw",
    "NoiseMasker",
    "NoisePolicy",
    "PGNoiseMaskError",
    "apply_mask",
    "beta_log_prob",
    "cells_to_mask",
    "faithful_loss",
    "gaussian_kernel1d",
    "mask_stats",
    "random_ce_scale",
    "random_cells",
    "reinforce_loss",
    "sample_cells",
]
