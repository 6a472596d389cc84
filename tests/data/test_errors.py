"""Data errors raised in DataLoader worker processes reach the main process as the same one-line error."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from visionkit.data.errors import AnnotationError, FeatureReadError, ImageReadError, VideoReadError
from visionkit.errors import one_line


class _Failing(Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [VideoReadError("/data/v.mp4", "decode error after frame 12"), FeatureReadError("/f/v.npy", "NaN at step 3"),
     ImageReadError("/i/x.png", "truncated file"), AnnotationError("/a.json", "video 'v' annotation 2: end < start")],
    ids=["video", "feature", "image", "annotation"],
)
def test_worker_errors_keep_their_type_and_one_line_message(error: Exception) -> None:
    with pytest.raises(type(error)) as caught:
        next(iter(DataLoader(_Failing(error), num_workers=1)))
    assert one_line(caught.value) == str(error)
    assert "\n" not in str(caught.value)
