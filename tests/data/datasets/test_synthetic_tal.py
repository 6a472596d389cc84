"""Synthetic TAL sequences: action segments are exactly the frames showing action digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.data.datasets.digits import digit_images, split_digit_indices
from visionkit.data.datasets.moving_digits import upscaled_digits
from visionkit.data.datasets.synthetic_tal import SyntheticTAL


def _frame_digits(video: torch.Tensor, pool: np.ndarray) -> list[int]:
    """The digit class shown in each frame, by exact match against the upscaled pool images."""
    glyphs = torch.from_numpy(upscaled_digits(2)[pool])
    labels = digit_images()[1][pool]
    out = []
    for frame in video[:, 0]:
        match = (glyphs - frame[None]).abs().flatten(1).max(1).values < 1e-6
        assert match.any(), "a frame that is no pool digit"
        out.append(int(labels[match.nonzero()[0, 0]]))
    return out


def test_segments_mark_exactly_the_action_frames() -> None:
    pool = split_digit_indices(0, {"train": 600})["train"]
    data = SyntheticTAL(6, pool, num_frames=48, fps=4.0, min_length=4, max_length=10, max_segments=3, seed=2)
    for i in range(len(data)):
        item = data[i]
        assert item["video"].shape == (48, 3, 16, 16) and item["duration"] == 12.0 and item["fps"] == 4.0
        digits = _frame_digits(item["video"], pool)
        truth = torch.zeros(48, dtype=torch.long) - 1
        for (start, end), label in zip(item["segments"].tolist(), item["segment_labels"].tolist(), strict=True):
            first, last = round(start * 4), round(end * 4)
            assert 4 <= last - first <= 10
            truth[first:last] = label
        shown = torch.tensor([data.action_classes.index(d) if d in data.action_classes else -1 for d in digits])
        assert torch.equal(shown, truth)
        starts = item["segments"][:, 0]
        assert torch.all(starts[1:] > item["segments"][:-1, 1]), "segments must be sorted with a gap between"


def test_sequences_are_deterministic_and_vary_with_the_index() -> None:
    pool = np.arange(1797)
    data = SyntheticTAL(4, pool, seed=1)
    assert torch.equal(data[2]["video"], SyntheticTAL(4, pool, seed=1)[(2, 5)]["video"])
    assert not torch.equal(data[2]["segments"], data[3]["segments"]) or not torch.equal(data[2]["video"], data[3]["video"])


def test_impossible_layouts_and_pools_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        SyntheticTAL(2, np.arange(1797), num_frames=30, max_length=20, max_segments=3)
    zeros = np.flatnonzero(digit_images()[1] == 0)
    with pytest.raises(ValueError, match="no image of digit"):
        SyntheticTAL(2, zeros)
