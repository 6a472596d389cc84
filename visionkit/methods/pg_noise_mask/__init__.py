"""Policy-gradient noise masks (Yavuz & Yang, 2024): a policy draws Beta noise per grid cell, the upsampled,
blurred mask multiplies the classifier's normalised input, and one joint loss trains both networks.

``NoisePolicy`` is the policy (timm trunk, two MLP heads, EMA prior buffers), ``sample_cells`` /
``beta_log_prob`` / ``random_cells`` the Beta cells, ``cells_to_mask`` / ``apply_mask`` the mask
geometry, ``faithful_loss`` (official, default) / ``reinforce_loss`` (corrected) /
``random_ce_scale`` the losses, ``NoiseMasker`` glues them for one training arm, ``NoiseMaskTask`` is the
Lightning task of stage 1 ("heating"; stage 2 is ``ClassificationTask`` from its checkpoint) and
``PolicyChart`` its chart of the policy's statistics.
"""

from visionkit.methods.pg_noise_mask.callbacks import PolicyChart, history_from_metrics, policy_figure
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
from visionkit.methods.pg_noise_mask.task import NoiseMaskTask

__all__ = [
    "EPS",
    "ESTIMATORS",
    "MaskDraw",
    "NoiseMaskTask",
    "NoiseMasker",
    "NoisePolicy",
    "PGNoiseMaskError",
    "PolicyChart",
    "apply_mask",
    "beta_log_prob",
    "cells_to_mask",
    "faithful_loss",
    "gaussian_kernel1d",
    "history_from_metrics",
    "mask_stats",
    "policy_figure",
    "random_ce_scale",
    "random_cells",
    "reinforce_loss",
    "sample_cells",
]
