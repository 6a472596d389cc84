"""The tiny pretrained backbones shipped in ``assets/`` (see ``assets/README.md``).

Each ``.safetensors`` file carries its recipe as metadata (backbone name, kwargs, classes), so it
can be rebuilt without a config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from visionkit.backbones.asset_files import ASSETS_DIR
from visionkit.backbones.factory import OPEN_CLIP_PREFIX, create_backbone
from visionkit.core.weights import WeightsError

__all__ = ["ASSETS_DIR", "asset_metadata", "asset_path", "load_asset"]


def asset_path(name: str) -> Path:
    """Path of a shipped asset by stem (``"shapes_test_resnet"``) or an explicit file path.

    Raises:
        WeightsError: no such file.
    """
    path = Path(name)
    if not path.suffix:
        path = ASSETS_DIR / f"{name}.safetensors"
    if not path.is_file():
        known = sorted(p.stem for p in ASSETS_DIR.glob("*.safetensors"))
        raise WeightsError(f"asset '{name}' not found at '{path}'; shipped assets: {known}")
    return path


def asset_metadata(name: str) -> dict[str, Any]:
    """The recipe stored in an asset: backbone, backbone_kwargs, num_classes, image_size, classes, val_acc."""
    from safetensors import safe_open

    with safe_open(str(asset_path(name)), "pt") as f:
        meta = dict(f.metadata() or {})
    if "backbone" not in meta:
        raise WeightsError(f"asset '{name}' has no 'backbone' metadata; it was not written by make_pretrained_assets.py")
    meta["backbone_kwargs"] = json.loads(meta.get("backbone_kwargs", "{}"))
    meta["classes"] = json.loads(meta.get("classes", "[]"))
    meta["num_classes"] = int(meta["num_classes"])
    meta["image_size"] = int(meta["image_size"]) if meta.get("image_size", "None") != "None" else None
    return meta


def load_asset(name: str, **overrides: Any) -> nn.Module:
    """Build the asset's backbone and load its weights.

    Args:
        name: asset stem or path.
        **overrides: ``create_backbone`` arguments that replace the recipe's (e.g. ``num_classes=10``
            for a new head, which is then freshly initialised).
    """
    meta = asset_metadata(name)
    sized = {} if meta["backbone"].startswith(OPEN_CLIP_PREFIX) else {"num_classes": meta["num_classes"], "image_size": meta["image_size"]}
    kwargs = {**sized, **meta["backbone_kwargs"], **overrides}
    return create_backbone(meta["backbone"], checkpoint_path=str(asset_path(name)), **kwargs)
