"""``read_activitynet_json``: subsets, class lists, empty videos, one-line ``AnnotationError`` for every
malformed video or segment, naming the video id and the annotation index, and ``clip_to_duration``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.data.tal_files import thumos_database, video_entry, write_activitynet_json
from tests.helpers import error_of
from visionkit.data.datasets.tal_annotations import END_TOLERANCE, read_activitynet_json, subset_annotations
from visionkit.data.errors import AnnotationError


def test_thumos_style_subsets_and_sorted_classes(tmp_path: Path) -> None:
    path = write_activitynet_json(tmp_path / "thumos.json", thumos_database(), version="THUMOS14")
    videos, classes = read_activitynet_json(path)
    assert classes == ["Diving", "LongJump"]
    assert list(videos) == ["val_a", "val_b", "test_a"]
    a = videos["val_a"]
    assert a.video_id == "val_a" and a.duration == 10.0 and a.subset == "validation"
    assert a.segments.dtype == torch.float32 and a.segments.tolist() == [[1.0, 3.0], [5.0, 9.0]]
    assert a.labels.dtype == torch.int64 and a.labels.tolist() == [1, 0]
    empty = videos["test_a"]
    assert empty.segments.shape == (0, 2) and empty.labels.shape == (0,)
    assert list(subset_annotations(videos, "test")) == ["test_a"]
    assert list(subset_annotations(videos, "validation")) == ["val_a", "val_b"]
    assert len(subset_annotations(videos, None)) == 3


def test_activitynet_style_subsets_and_ignored_keys(tmp_path: Path) -> None:
    database = {
        "abc": video_entry(
            30.5, "training", [(2.0, 12.25, "Walking the dog")], url="https://x", resolution="640x360"
        ),
        "def": video_entry(20.0, "validation", [(0.0, 20.0, "Archery")]),
        "ghi": {"duration": 15.0, "subset": "testing", "url": "https://y"},  # no annotations key at all
    }
    for entry in database.values():
        for ann in entry.get("annotations", []):
            ann["label_id"] = 7
    path = write_activitynet_json(
        tmp_path / "anet.json", database, version="VERSION 1.3", taxonomy=[{"nodeId": 1}]
    )
    videos, classes = read_activitynet_json(path)
    assert classes == ["Archery", "Walking the dog"]
    assert [v.subset for v in videos.values()] == ["training", "validation", "testing"]
    assert videos["abc"].labels.tolist() == [1] and videos["def"].segments.tolist() == [[0.0, 20.0]]
    assert videos["ghi"].segments.shape == (0, 2)


def test_given_classes_index_labels(tmp_path: Path) -> None:
    path = write_activitynet_json(tmp_path / "t.json", thumos_database())
    videos, classes = read_activitynet_json(path, classes=["LongJump", "Diving", "Unused"])
    assert classes == ["LongJump", "Diving", "Unused"]
    assert videos["val_a"].labels.tolist() == [0, 1]
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(path, classes=["LongJump"])
    message = error_of(exc)
    assert "'val_a' annotation 1" in message and "'Diving'" in message and "['LongJump']" in message
    with pytest.raises(ValueError, match="distinct"):
        read_activitynet_json(path, classes=["a", "a"])


def test_end_within_tolerance_is_clipped(tmp_path: Path) -> None:
    path = write_activitynet_json(
        tmp_path / "t.json", {"v": video_entry(5.0, "training", [(1.0, 5.0 + END_TOLERANCE / 2, "x")])}
    )
    videos, _ = read_activitynet_json(path)
    assert videos["v"].segments.tolist() == [[1.0, 5.0]]


def test_clip_to_duration_clips_long_ends_with_a_warning(tmp_path: Path) -> None:
    database = {
        "v_ok": video_entry(5.0, "training", [(1.0, 2.0, "x")]),
        "v_long": video_entry(10.0, "training", [(1.0, 2.0, "x"), (8.0, 10.5, "y"), (9.0, 12.0, "x")]),
    }
    path = write_activitynet_json(tmp_path / "anet.json", database)
    with pytest.raises(AnnotationError) as exc:  # off by default
        read_activitynet_json(path)
    message = error_of(exc)
    assert "'v_long' annotation 1" in message and "clip_to_duration=True" in message
    with pytest.warns(UserWarning) as record:
        videos, classes = read_activitynet_json(path, clip_to_duration=True)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "'v_long' annotation 1: segment [8.0, 10.5]" in messages[0] and "clipped to [8.0, 10.0]" in messages[0]
    assert "'v_long' annotation 2: segment [9.0, 12.0]" in messages[1] and str(path) in messages[1]
    assert videos["v_long"].segments.tolist() == [[1.0, 2.0], [8.0, 10.0], [9.0, 10.0]]
    assert videos["v_long"].labels.tolist() == [0, 1, 0] and classes == ["x", "y"]
    assert videos["v_ok"].segments.tolist() == [[1.0, 2.0]]


def test_clip_to_duration_keeps_segments_starting_past_the_end_an_error(tmp_path: Path) -> None:
    path = write_activitynet_json(
        tmp_path / "anet.json", {"v_late": video_entry(10.0, "training", [(1.0, 2.0, "x"), (10.0, 11.0, "x")])}
    )
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(path, clip_to_duration=True)
    message = error_of(exc)
    assert "'v_late' annotation 1" in message and "starts at or after the video's duration 10.0" in message


def _segment_case(segment: Any) -> dict[str, Any]:
    good = {"segment": [0.5, 1.0], "label": "a"}
    return {
        "video_test_0000004": {
            "duration": 10.0,
            "subset": "test",
            "annotations": [good, {"segment": segment, "label": "a"}],
        }
    }


@pytest.mark.parametrize(
    ("segment", "needle"),
    [
        ([1.0], "pair of numbers"),
        ([1.0, 2.0, 3.0], "pair of numbers"),
        (["1", 2.0], "pair of numbers"),
        ([1.0, None], "pair of numbers"),
        (None, "pair of numbers"),
        ([4.0, 3.0], "must end after it starts"),
        ([3.0, 3.0], "zero-length"),
        ([-0.5, 3.0], "starts before 0"),
        ([8.0, 10.5], "ends past the video's duration 10.0"),
        ([10.0, 10.0005], "starts at or after the video's duration"),
    ],
)
def test_bad_segments_name_video_and_index(tmp_path: Path, segment: Any, needle: str) -> None:
    path = write_activitynet_json(tmp_path / "bad.json", _segment_case(segment))
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(path)
    message = error_of(exc)
    assert "'video_test_0000004' annotation 1" in message and needle in message and str(path) in message


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"subset": "test", "annotations": []}, "has no 'duration'"),
        ({"duration": -3.0, "subset": "test", "annotations": []}, "duration must be a positive number"),
        ({"duration": 0, "subset": "test", "annotations": []}, "duration must be a positive number"),
        ({"duration": "abc", "subset": "test", "annotations": []}, "duration must be a positive number"),
        ({"duration": 5.0, "annotations": []}, "'subset' must be a string"),
        (
            {"duration": 5.0, "subset": "test", "annotations": {"segment": [0, 1]}},
            "'annotations' must be a list",
        ),
        ({"duration": 5.0, "subset": "test", "annotations": [{"segment": [0, 1]}]}, "annotation 0: 'label'"),
        ([1, 2], "expected an object"),
    ],
)
def test_bad_videos_name_the_video(tmp_path: Path, entry: Any, needle: str) -> None:
    path = write_activitynet_json(
        tmp_path / "bad.json", {"ok": video_entry(5.0, "test", []), "video_x": entry}
    )
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(path)
    message = error_of(exc)
    assert "'video_x'" in message and needle in message


def test_duration_given_as_string_is_read(tmp_path: Path) -> None:
    path = write_activitynet_json(
        tmp_path / "t.json", {"v": {"duration": "12.5", "subset": "training", "annotations": []}}
    )
    assert read_activitynet_json(path)[0]["v"].duration == 12.5


def test_unreadable_file_and_missing_database(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"database": {\n  "v": {"duration": 3,}\n}}')
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(broken)
    assert "not valid JSON (line 2, column" in error_of(exc)
    with pytest.raises(AnnotationError, match="does not exist"):
        read_activitynet_json(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"videos": {}}')
    with pytest.raises(AnnotationError) as exc:
        read_activitynet_json(other)
    assert 'no "database"' in error_of(exc) and "videos" in error_of(exc)
    listed = write_activitynet_json(tmp_path / "list.json", [])  # type: ignore[arg-type]
    with pytest.raises(AnnotationError, match="must map video ids"):
        read_activitynet_json(listed)
