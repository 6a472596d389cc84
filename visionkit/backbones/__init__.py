"""Backbones: one factory for timm and open_clip models, and access to their intermediate activations."""

from visionkit.backbones.factory import BackboneError, create_backbone

__all__ = ["BackboneError", "create_backbone"]
