"""Backbones: one factory for timm and open_clip models, and access to their intermediate activations."""

from visionkit.backbones.factory import BackboneError, create_backbone
from visionkit.backbones.hooks import (
    ActivationEditor,
    ActivationRecorder,
    HookFiredTwiceError,
    ModuleNameError,
    resolve_modules,
)
from visionkit.backbones.intermediates import Intermediates, get_intermediates, num_levels, take_indices
from visionkit.backbones.vit_stepper import ViTStepper, insert_tokens, remove_tokens

__all__ = [
    "ActivationEditor",
    "ActivationRecorder",
    "BackboneError",
    "HookFiredTwiceError",
    "Intermediates",
    "ModuleNameError",
    "ViTStepper",
    "create_backbone",
    "get_intermediates",
    "insert_tokens",
    "num_levels",
    "remove_tokens",
    "resolve_modules",
    "take_indices",
]
