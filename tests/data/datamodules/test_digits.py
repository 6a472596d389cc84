"""``DigitsDataModule``: disjoint splits of the 1797 digits, resizing, channels, too many samples."""

from __future__ import annotations

import numpy as np
import pytest

from visionkit.data.datamodules import DigitsDataModule
from visionkit.data.datasets import Digits


def test_digits() -> None:
    dm = DigitsDataModule(num_train=100, num_val=50, num_test=50, image_size=24, channels=1)
    s = dm.dataset("train")[0]
    assert s["image"].shape == (1, 24, 24) and 0 <= s["label"] < 10
    assert dm.num_classes == 10 and dm.in_channels == 1
    all_idx = np.concatenate(list(dm.split_indices.values()))
    assert len(set(all_idx.tolist())) == 200
    assert Digits(image_size=32)[0]["image"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="1797"):
        DigitsDataModule(num_train=1700, num_val=100, num_test=100)
