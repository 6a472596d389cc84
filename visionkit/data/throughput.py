"""How fast a DataLoader delivers samples: samples per second over a number of batches, after warm-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class Throughput:
    """Samples per second of one loader, over ``batches`` timed batches (``samples`` in all)."""

    samples: int
    batches: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def loader_throughput(loader: DataLoader, batches: int = 20, warmup: int = 2) -> Throughput:
    """Time ``batches`` batches of ``loader`` after ``warmup`` untimed ones (worker start-up, file caches).

    A loader shorter than that is run for further epochs (``set_epoch`` on its sampler, as Lightning
    does; the time to start each epoch's iterator is counted). Counts the samples of the first tensor
    field of each batch (``video``, ``image`` or ``features``).
    """
    epochs = _epochs(loader)
    for _ in range(warmup):
        next(epochs)
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        batch = next(epochs)
        samples += len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))
    return Throughput(samples, batches, time.perf_counter() - start)


def _epochs(loader: DataLoader) -> Iterator[dict]:
    """The loader's batches, epoch after epoch."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")
        epoch += 1
