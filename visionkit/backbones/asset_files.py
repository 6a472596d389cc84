"""Where visionkit's shipped files live: ``ASSETS_DIR`` and the open_clip configs under ``assets/open_clip``.

Imported by both :mod:`visionkit.backbones.factory` and :mod:`visionkit.backbones.assets`, and
importing neither, so the two depend one way only (``assets`` -> ``factory``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS_DIR", "OPEN_CLIP_CONFIG_DIR", "register_open_clip_configs"]

#: The repository's asset folder (present in a source checkout / editable install).
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
#: visionkit's own open_clip model configs (``<arch>.json``).
OPEN_CLIP_CONFIG_DIR = ASSETS_DIR / "open_clip"


def register_open_clip_configs() -> None:
    """Make open_clip know visionkit's configs (``assets/open_clip/*.json``) when one is missing; imports open_clip."""
    import open_clip

    local = OPEN_CLIP_CONFIG_DIR
    if local.is_dir() and any(p.stem not in open_clip.list_models() for p in local.glob("*.json")):
        open_clip.add_model_config(local)
