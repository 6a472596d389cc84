"""``HSTError``: a backbone, argument or input HST cannot work with."""

from __future__ import annotations

from visionkit.errors import VisionkitError

__all__ = ["HSTError"]


class HSTError(VisionkitError, ValueError):
    """A backbone, argument or input HST cannot work with (one line, naming it and what is expected)."""
