"""Temporal action annotations in the ActivityNet JSON format (ActivityNet v1.3, THUMOS14 as converted by
ActionFormer and others), parsed into :class:`VideoAnnotation` records; every problem is reported on one line.

The format::

    {"database": {"<video_id>": {"duration": 120.5, "subset": "training",
                                 "annotations": [{"segment": [12.0, 20.5], "label": "Long jump"}, ...]},
                  ...}}

Subset names are free strings: ActivityNet uses ``"training"``/``"validation"``/``"testing"``; THUMOS14
in this format uses ``"validation"`` (the videos trained on) and ``"test"``. Other keys (``url``,
``resolution``, ``label_id``, ``taxonomy``, ``version``, ...) are ignored. Times are seconds.

Rules (each violation is an :class:`~visionkit.data.errors.AnnotationError` naming the video id and,
for a segment, its annotation index):

* ``duration`` is a finite number > 0; ``subset`` a string; ``annotations`` a list (a missing
  ``annotations`` key, as in some test subsets, means no segments: ``K = 0``, like an empty list);
* ``segment`` is a pair of finite numbers ``[start, end]`` with ``0 <= start < end``: zero-length segments
  are errors (they cover no frame; a converter that emits them has a bug worth seeing);
* ``end`` may pass ``duration`` by at most :data:`END_TOLERANCE` seconds (durations are often rounded
  to the millisecond); such an end is clipped to ``duration``; a larger overshoot is an error, unless
  ``clip_to_duration=True``: then it is clipped too, with a warning naming the video id and annotation
  index (real ActivityNet-1.3 files have such segments); a segment that *starts* at or after
  ``duration`` is an error either way;
* ``label`` is a string; with an explicit class list it must be one of the classes.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from visionkit.data.errors import AnnotationError

__all__ = ["END_TOLERANCE", "VideoAnnotation", "read_activitynet_json", "subset_annotations"]

#: Seconds by which a segment's end may pass the video's duration (clipped to the duration).
END_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class VideoAnnotation:
    """The ground truth of one video (compared by identity: its fields are tensors).

    Attributes:
        video_id: the key of the video in the JSON ``database``.
        duration: length of the video in seconds (as annotated).
        subset: the subset the video belongs to (``"training"``, ``"validation"``, ``"test"``, ...).
        segments: float32 ``(K, 2)`` (start, end) in seconds from the video's start, ``start < end``.
        labels: int64 ``(K,)`` class indices into the class list.
    """

    video_id: str
    duration: float
    subset: str
    segments: Tensor
    labels: Tensor


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_activitynet_json(
    path: str | Path, classes: list[str] | None = None, clip_to_duration: bool = False
) -> tuple[dict[str, VideoAnnotation], list[str]]:
    """Parse an ActivityNet-style annotation file (see the module docstring for the format and the rules).

    Args:
        path: the JSON file.
        classes: the class list to index labels with (e.g. a model's); ``None``: the sorted label names
            found in the file (all subsets, so every subset agrees on the indices).
        clip_to_duration: clip a segment that ends past the video's duration (by more than
            :data:`END_TOLERANCE`) to the duration, with a ``UserWarning`` naming the video id and the
            annotation index, instead of raising; segments starting at or after the duration still raise.

    Returns:
        ``({video_id: VideoAnnotation}, classes)``, videos in file order.

    Raises:
        AnnotationError: unreadable file or JSON (with line and column), no ``database``, or a video or
            segment that breaks a rule; the one-line message names the video id and annotation index.
        ValueError: ``classes`` is empty or has duplicates.
    """
    path = Path(path)
    if classes is not None and (not classes or len(set(classes)) != len(classes)):
        raise ValueError(f"classes must be a non-empty list of distinct names, got {classes}")
    database = _read_database(path)
    parsed: dict[str, tuple[float, str, list[tuple[float, float]], list[str]]] = {}
    for video_id, entry in database.items():
        parsed[video_id] = _parse_video(path, video_id, entry, clip_to_duration)
    if classes is None:
        classes = sorted({name for *_, names in parsed.values() for name in names})
    index = {name: i for i, name in enumerate(classes)}
    videos: dict[str, VideoAnnotation] = {}
    for video_id, (duration, subset, segments, names) in parsed.items():
        for k, name in enumerate(names):
            if name not in index:
                shown = classes if len(classes) <= 10 else [*classes[:10], "..."]
                raise AnnotationError(
                    path,
                    f"video '{video_id}' annotation {k}: label '{name}' is not one of the classes {shown}",
                )
        videos[video_id] = VideoAnnotation(
            video_id,
            duration,
            subset,
            torch.tensor(segments, dtype=torch.float32).reshape(-1, 2),
            torch.tensor([index[n] for n in names], dtype=torch.int64),
        )
    return videos, list(classes)


def _read_database(path: Path) -> dict[str, Any]:
    """The ``database`` object of the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise AnnotationError(path, "does not exist; expected an ActivityNet-style JSON file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(path, f"cannot be read as UTF-8 text: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            path, f"is not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}"
        ) from err
    if not isinstance(data, dict) or "database" not in data:
        found = sorted(data)[:10] if isinstance(data, dict) else type(data).__name__
        raise AnnotationError(
            path, f'has no "database" object (found {found}); expected {{"database": {{video_id: ...}}}}'
        )
    database = data["database"]
    if not isinstance(database, dict):
        raise AnnotationError(path, f'"database" must map video ids to videos, got {type(database).__name__}')
    return database


def _parse_video(
    path: Path, video_id: str, entry: Any, clip_to_duration: bool = False
) -> tuple[float, str, list[tuple[float, float]], list[str]]:
    """``(duration, subset, segments, label names)`` of one database entry, checked (segments ending past
    the duration are clipped with a warning when ``clip_to_duration``)."""
    where = f"video '{video_id}'"
    if not isinstance(entry, dict):
        raise AnnotationError(
            path, f"{where}: expected an object with duration, subset, annotations, got {entry!r:.60}"
        )
    if "duration" not in entry:
        raise AnnotationError(path, f"{where}: has no 'duration' (seconds)")
    duration = entry["duration"]
    if isinstance(duration, str):  # some converters write numbers as strings
        try:
            duration = float(duration)
        except ValueError:
            pass
    if not _is_number(duration) or duration <= 0:
        raise AnnotationError(
            path, f"{where}: duration must be a positive number of seconds, got {entry['duration']!r}"
        )
    subset = entry.get("subset")
    if not isinstance(subset, str):
        raise AnnotationError(
            path, f"{where}: 'subset' must be a string such as 'training' or 'test', got {subset!r}"
        )
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise AnnotationError(
            path, f"{where}: 'annotations' must be a list, got {type(annotations).__name__}"
        )
    segments: list[tuple[float, float]] = []
    names: list[str] = []
    for k, ann in enumerate(annotations):
        at = f"{where} annotation {k}"
        segment = ann.get("segment") if isinstance(ann, dict) else None
        if not (
            isinstance(segment, list | tuple) and len(segment) == 2 and all(_is_number(v) for v in segment)
        ):
            raise AnnotationError(
                path,
                f"{at}: 'segment' must be a pair of numbers [start, end] in seconds, got {segment!r:.60}",
            )
        start, end = float(segment[0]), float(segment[1])
        if start < 0:
            raise AnnotationError(path, f"{at}: segment [{start}, {end}] starts before 0 s")
        if end <= start:
            raise AnnotationError(
                path,
                f"{at}: segment [{start}, {end}] must end after it starts (zero-length segments are errors)",
            )
        if start >= duration:
            raise AnnotationError(
                path, f"{at}: segment [{start}, {end}] starts at or after the video's duration {duration} s"
            )
        if end > duration + END_TOLERANCE:
            if not clip_to_duration:
                raise AnnotationError(
                    path,
                    f"{at}: segment [{start}, {end}] ends past the video's duration {duration} s "
                    "(clip_to_duration=True clips such ends)",
                )
            warnings.warn(
                f"{path}: {at}: segment [{start}, {end}] ends past the video's duration {duration} s; "
                f"clipped to [{start}, {float(duration)}]",
                UserWarning,
                stacklevel=3,
            )
        label = ann.get("label")
        if not isinstance(label, str):
            raise AnnotationError(path, f"{at}: 'label' must be a class name (string), got {label!r}")
        segments.append((start, min(end, float(duration))))
        names.append(label)
    return float(duration), subset, segments, names


def subset_annotations(
    annotations: dict[str, VideoAnnotation], subset: str | None
) -> dict[str, VideoAnnotation]:
    """The videos of ``subset`` (all of them when ``subset`` is ``None``), in order."""
    if subset is None:
        return dict(annotations)
    return {k: v for k, v in annotations.items() if v.subset == subset}
