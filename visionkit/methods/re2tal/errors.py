"""``RewireError``: a model, stage or argument that Re²TAL rewiring cannot work with; ``TALInputError``: a
batch or argument the Re²TAL localization task cannot use."""

from __future__ import annotations

from visionkit.errors import VisionkitError

__all__ = ["RewireError", "TALInputError"]


class RewireError(VisionkitError, ValueError):
    """A model, stage or argument Re²TAL rewiring cannot work with (one line, naming it and what is expected)."""


class TALInputError(VisionkitError, ValueError):
    """A batch or argument the localization task cannot use (one line, naming it and what is expected)."""
