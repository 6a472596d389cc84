"""``RewireError``: a model, stage or argument that Re²TAL rewiring cannot work with."""

from __future__ import annotations

from visionkit.errors import VisionkitError

__all__ = ["RewireError"]


class RewireError(VisionkitError, ValueError):
    """A model, stage or argument Re²TAL rewiring cannot work with (one line, naming it and what is expected)."""
