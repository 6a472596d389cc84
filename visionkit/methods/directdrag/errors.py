"""``DirectDragError``: an argument or input the DirectDrag editor cannot work with."""

from __future__ import annotations

from visionkit.errors import VisionkitError

__all__ = ["DirectDragError"]


class DirectDragError(VisionkitError, ValueError):
    """A point, setting or model DirectDrag cannot work with (one line, naming it and what is expected)."""
