"""Per-snippet feature files: reading ``.npy`` and ``.pt`` (legacy format too) as float32 ``(T, D)``, and
one-line errors for non-finite values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.tal_files import ramp_features, write_features
from visionkit.data.datasets.snippet_features import read_features
from visionkit.data.errors import FeatureReadError


def test_nan_features_fail_when_read_and_legacy_pt_loads(tmp_path: Path) -> None:
    bad = ramp_features(4)
    bad[2, 1] = np.nan
    path = write_features(tmp_path, "v", bad)
    with pytest.raises(FeatureReadError, match="time step 2"):
        read_features(path)
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.arange(6.0).reshape(3, 2).double(), legacy, _use_new_zipfile_serialization=False)
    features = read_features(legacy)
    assert features.dtype == torch.float32 and features.tolist() == [[0, 1], [2, 3], [4, 5]]
    ints = write_features(tmp_path, "ints", np.arange(6, dtype=np.int16).reshape(3, 2))
    assert read_features(ints).dtype == torch.float32
