"""``EpochSeededSampler``: a permutation fixed by seed and epoch."""

from __future__ import annotations

from visionkit.data.samplers import EpochSeededSampler


def test_epoch_seeded_sampler() -> None:
    s = EpochSeededSampler(10, seed=0)
    first = list(s)
    assert sorted(first) == list(range(10)) and list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first
