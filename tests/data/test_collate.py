"""Batching keeps each sample's segments (no count is padded away) and stacks everything else."""

from __future__ import annotations

import pytest
import torch

from visionkit.data.collate import collate_samples


def _sample(k: int) -> dict:
    return {
        "video": torch.full((2, 3, 4, 4), float(k)),
        "segments": torch.arange(2 * k, dtype=torch.float32).view(k, 2),
        "segment_labels": torch.arange(k),
        "fps": 8.0,
        "video_id": f"v{k}",
    }


def test_variable_segment_counts_stay_per_sample() -> None:
    batch = collate_samples([_sample(0), _sample(3), _sample(1)])
    assert batch["video"].shape == (3, 2, 3, 4, 4)
    assert [s.shape for s in batch["segments"]] == [(0, 2), (3, 2), (1, 2)]
    assert batch["segment_labels"][1].tolist() == [0, 1, 2]
    assert batch["fps"].tolist() == [8.0, 8.0, 8.0] and batch["video_id"] == ["v0", "v3", "v1"]


def test_samples_with_different_fields_are_an_error() -> None:
    other = _sample(1)
    del other["fps"]
    with pytest.raises(ValueError, match="sample 1 has fields"):
        collate_samples([_sample(1), other])
