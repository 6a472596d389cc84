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


def test_tagged_sampler_yields_index_and_epoch_and_forwards_set_epoch() -> None:
    from visionkit.data.samplers import (
        EpochSeededSampler,
        EpochTaggedDistributedSampler,
        EpochTaggedSampler,
        split_key,
    )

    tagged = EpochTaggedSampler(EpochSeededSampler(5, seed=1))
    tagged.set_epoch(3)
    keys = list(tagged)
    assert [e for _, e in keys] == [3] * 5 and sorted(i for i, _ in keys) == list(range(5))
    plain = EpochSeededSampler(5, seed=1)
    plain.set_epoch(3)
    assert [i for i, _ in keys] == list(plain)
    assert split_key((4, 2)) == (4, 2) and split_key(4) == (4, None)

    shards = []
    for rank in range(2):
        dist = EpochTaggedDistributedSampler(range(6), num_replicas=2, rank=rank, seed=0)
        dist.set_epoch(1)
        shards.append(list(dist))
    assert all(e == 1 for shard in shards for _, e in shard)
    assert sorted(i for shard in shards for i, _ in shard) == list(range(6))
