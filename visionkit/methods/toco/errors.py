"""``ToCoError``: a backbone, argument or input ToCo cannot work with."""

from __future__ import annotations

from visionkit.errors import VisionkitError

__all__ = ["ToCoError"]


class ToCoError(VisionkitError, ValueError):
    """A backbone, argument or input ToCo cannot work with (one line, naming it and what is expected)."""
