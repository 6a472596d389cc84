"""Samplers whose order is a pure function of (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler, Sampler


class EpochSeededSampler(Sampler[int]):
    """A random permutation of ``range(length)`` drawn from ``seed + epoch``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch, including after a
    resume from a checkpoint, so an interrupted and an uninterrupted run see identical batches.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=gen).tolist())

    def __len__(self) -> int:
        return self.length


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` for each index of ``sampler``, so a dataset can draw its per-sample
    randomness (clip position, augmentation) from ``(seed, index, epoch)``.

    The draw is then the same in every worker process, after a resume, and on every DDP rank,
    yet differs from epoch to epoch. :meth:`set_epoch` is forwarded to ``sampler`` (Lightning calls
    it at the start of every training epoch).
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Tag the following indices with ``epoch`` (and select the inner sampler's order)."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), self.epoch) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """``(index, epoch)`` of a dataset key from :class:`EpochTaggedSampler` (``epoch`` None for a plain index)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), None


class EpochTaggedDistributedSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` that yields ``(index, epoch)`` like
    :class:`EpochTaggedSampler` (a ``DistributedSampler`` itself, so Lightning does not shard it again)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), self.epoch) for i in super().__iter__())
