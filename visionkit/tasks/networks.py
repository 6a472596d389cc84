"""The network a task's backbone arguments describe (shared by the classifier and segmenter bases)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from visionkit.backbones.assets import load_asset
from visionkit.backbones.factory import create_backbone

__all__ = ["network_from_hparams"]


def network_from_hparams(hp: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The timm network of ``asset``, or of ``backbone`` (+ ``pretrained`` / ``checkpoint_path``), with a
    ``num_classes``-way classifier (freshly initialised when the weights hold another size).

    ``hp`` holds the backbone arguments of :class:`~visionkit.tasks.ClassifierBase`: ``backbone``,
    ``backbone_kwargs``, ``pretrained``, ``checkpoint_path``, ``asset``, ``in_channels``, ``image_size``.
    """
    if hp.get("asset"):
        return load_asset(hp["asset"], num_classes=num_classes, in_chans=hp["in_channels"])
    return create_backbone(
        hp["backbone"],
        pretrained=hp["pretrained"],
        checkpoint_path=hp["checkpoint_path"],
        num_classes=num_classes,
        in_chans=hp["in_channels"],
        image_size=hp["image_size"],
        **dict(hp.get("backbone_kwargs") or {}),
    )
