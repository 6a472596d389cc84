"""Synthetic shapes datasets: determinism (across workers too), sample format, label/mask agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from visionkit.data.datasets import SHAPES, SyntheticMultiShapes, SyntheticShapes
from visionkit.data.datasets.synthetic_shapes import shape_mask


def test_synthetic_items_are_pure_functions_of_seed_and_index() -> None:
    a, b = SyntheticShapes(50, seed=3), SyntheticShapes(50, seed=3)
    for i in (0, 7, 49):
        for key in ("image", "label", "mask"):
            assert torch.equal(a[i][key], b[i][key])
    assert not torch.equal(a[0]["image"], SyntheticShapes(50, seed=4)[0]["image"])


def test_identical_across_worker_processes() -> None:
    data = SyntheticShapes(12, seed=1)
    serial = next(iter(DataLoader(data, batch_size=12)))
    parallel = torch.cat([b["image"] for b in DataLoader(data, batch_size=3, num_workers=2)])
    assert torch.equal(serial["image"], parallel)


def test_sample_format() -> None:
    s = SyntheticShapes(4, image_size=40)[0]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 40, 40)
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["label"].dtype == torch.int64 and s["label"].ndim == 0
    assert s["mask"].shape == (40, 40) and set(s["mask"].unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("index", range(20))
def test_label_agrees_with_mask(index: int) -> None:
    data = SyntheticShapes(20, image_size=48, num_classes=8, seed=5)
    s = data[index]
    mask = s["mask"].bool().numpy()
    assert mask.sum() > 30
    # the mask is exactly the labelled shape drawn at the mask's bounding-box centre and size,
    # and clearly not any other class
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[0:48, 0:48] + 0.5
    ious = []
    for kind in SHAPES:
        best = 0.0
        for s_half in np.linspace(0.15 * 48, 0.45 * 48, 40):
            cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
            for dy in (-1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3):
                m = shape_mask(kind, xx - cx, yy - cy - dy, s_half)
                best = max(best, (m & mask).sum() / (m | mask).sum())
        ious.append(best)
    assert int(np.argmax(ious)) == int(s["label"])


def test_object_differs_from_background() -> None:
    s = SyntheticShapes(8, seed=2)[3]
    inside = s["image"][:, s["mask"].bool()].mean(1)
    outside = s["image"][:, ~s["mask"].bool()].mean(1)
    assert (inside - outside).abs().sum() > 0.3


def test_multi_shapes_labels_match_mask() -> None:
    data = SyntheticMultiShapes(30, image_size=64, num_classes=4, seed=0)
    counts = []
    for i in range(len(data)):
        s = data[i]
        present = sorted((s["mask"].unique()[1:] - 1).tolist())
        assert present == s["label"].nonzero().flatten().tolist()
        assert s["label"].dtype == torch.float32
        counts.append(len(present))
    assert max(counts) >= 2 and min(counts) >= 1
