"""Backbones: one factory for timm and open_clip models, and access to their intermediate activations
and hidden states."""

from visionkit.backbones.factory import BackboneError, create_backbone
from visionkit.backbones.hidden_states import (
    HiddenStates,
    HiddenStatesError,
    open_clip_hidden_states,
    text_positions,
    vit_hidden_states,
)
from visionkit.backbones.hooks import (
    ActivationEditor,
    ActivationRecorder,
    HookFiredTwiceError,
    ModuleNameError,
    resolve_modules,
)
from visionkit.backbones.intermediates import (
    Intermediates,
    get_intermediates,
    num_levels,
    open_clip_text_owner,
    take_indices,
)
from visionkit.backbones.vit_stepper import ViTStepper, insert_tokens, remove_tokens

__all__ = [
    "ActivationEditor",
    "ActivationRecorder",
    "BackboneError",
    "HiddenStates",
    "HiddenStatesError",
    "HookFiredTwiceError",
    "Intermediates",
    "ModuleNameError",
    "ViTStepper",
    "create_backbone",
    "get_intermediates",
    "insert_tokens",
    "num_levels",
    "open_clip_hidden_states",
    "open_clip_text_owner",
    "remove_tokens",
    "resolve_modules",
    "take_indices",
    "text_positions",
    "vit_hidden_states",
]
