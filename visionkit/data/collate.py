"""Batching of samples whose fields may differ in length (temporal segments, captions, paths)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

#: Sample fields whose length varies from sample to sample: batched as lists, never padded.
RAGGED_KEYS = ("segments", "segment_labels")


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: fields in :data:`RAGGED_KEYS` become lists of per-sample tensors
    (``segments``: a list of ``(K_i, 2)``, so no sample's count is padded away), every other field
    goes through ``default_collate`` (tensors stacked, numbers to tensors, strings to lists).

    Raises:
        ValueError: the samples do not share the same fields.
    """
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    keys = set(samples[0])
    for i, sample in enumerate(samples[1:], 1):
        if set(sample) != keys:
            raise ValueError(f"sample {i} has fields {sorted(sample)}, sample 0 has {sorted(keys)}")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = [torch.as_tensor(v) for v in values] if key in RAGGED_KEYS else default_collate(values)
    return batch
