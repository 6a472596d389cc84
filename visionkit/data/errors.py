"""Data errors with messages that name the input and say what was expected.

Each can also be built from one message string: a DataLoader re-raises an error of a worker process as
``type(err)(text)``, and the error then carries the original one-line message (not the traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from visionkit.errors import VisionkitError, worker_message


class DatasetNotFoundError(VisionkitError, FileNotFoundError):
    """A dataset root is missing or holds no usable files.

    Args:
        name: dataset name.
        root: the path that was searched.
        layout: the expected folder layout, in one line.
        reason: what was wrong (``"does not exist"``, ``"holds no images"``, ...).
    """

    def __init__(self, name: str, root: str | Path, layout: str, reason: str = "does not exist") -> None:
        self.root = Path(root)
        super().__init__(f"{name} root '{root}' {reason}; expected layout: {layout}")


class ImageReadError(VisionkitError, OSError):
    """An image file that cannot be decoded, or whose pixels are unusable (NaN, out of range).

    Args:
        path: the image file.
        err: the decoder's exception, or a sentence saying what is wrong and what was expected.
    """

    def __init__(self, path: str | Path, err: Exception | str | None = None) -> None:
        if err is None:  # rebuilt by a DataLoader from the message of a worker process
            self.path = None
            super().__init__(worker_message(str(path)))
            return
        self.path = Path(path)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        super().__init__(f"unreadable image '{path}': {first}")


class FileContentError(VisionkitError, ValueError):
    """A data file whose content is malformed, in one line naming the file (``kind`` says which sort of file).

    Args:
        path: the file.
        problem: what is wrong and what was expected (newlines are folded into spaces).
    """

    #: how the message names the file, e.g. ``"caption file"``.
    kind: ClassVar[str] = "file"

    def __init__(self, path: str | Path, problem: str | None = None) -> None:
        if problem is None:  # rebuilt by a DataLoader from the message of a worker process
            self.path = None
            super().__init__(worker_message(str(path)))
            return
        self.path = Path(path)
        super().__init__(f"{self.kind} '{path}': {' '.join(problem.splitlines())}")


class CaptionFileError(FileContentError):
    """A caption file (CSV or JSON) that is malformed or names a missing image, in one line."""

    kind = "caption file"


class VideoReadError(VisionkitError, OSError):
    """A video file (or a folder of extracted frames) that cannot be read, in one line.

    Args:
        path: the video file or frames folder.
        err: the decoder's exception, or a sentence saying what is wrong and what was expected.
    """

    def __init__(self, path: str | Path, err: Exception | str | None = None) -> None:
        if err is None:  # rebuilt by a DataLoader from the message of a worker process
            self.path = None
            super().__init__(worker_message(str(path)))
            return
        self.path = Path(path)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        super().__init__(f"unreadable video '{path}': {first}")


class FeatureReadError(VideoReadError):
    """A feature file that cannot be read or does not hold a finite numeric ``(T, D)`` array, in one line.

    A :class:`VideoReadError`, so handlers of unreadable videos catch it too.

    Args:
        path: the feature file.
        err: the loader's exception, or a sentence saying what is wrong and what was expected.
    """

    def __init__(self, path: str | Path, err: Exception | str | None = None) -> None:
        super().__init__(path, err)
        if err is None:
            return
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        self.args = (f"unreadable feature file '{path}': {first}",)

    def __str__(self) -> str:
        return str(self.args[0])


class AnnotationError(FileContentError):
    """A temporal annotation file (ActivityNet-style JSON) that is malformed, in one line (the problem names
    the video id and annotation index)."""

    kind = "annotation file"

