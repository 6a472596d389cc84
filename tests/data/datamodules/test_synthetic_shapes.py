"""Synthetic-shapes datamodules: disjoint split streams, argument checks, ``plot``."""

from __future__ import annotations

import pytest
import torch

from visionkit.data.datamodules import SyntheticMultiShapesDataModule, SyntheticShapesDataModule


def test_splits_are_disjoint_streams() -> None:
    dm = SyntheticShapesDataModule(num_train=20, num_val=20, num_test=20)
    train, val = dm.dataset("train"), dm.dataset("val")
    assert not any(torch.equal(train[i]["image"], val[i]["image"]) for i in range(20))
    assert dm.num_classes == 4 and dm.in_channels == 3 and dm.image_size == 32


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapesDataModule(num_classes=9)
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticShapesDataModule(batch_size=0)
    with pytest.raises(ValueError, match="max_objects"):
        SyntheticMultiShapesDataModule(num_classes=2, max_objects=3)


def test_plot_returns_figure() -> None:
    import matplotlib.pyplot as plt

    dm = SyntheticMultiShapesDataModule(num_train=4, num_val=4, num_test=4)
    fig = dm.plot(dm.dataset("train")[0])
    assert len(fig.axes) == 2
    plt.close(fig)
    dm = SyntheticShapesDataModule(num_train=4, num_val=4, num_test=4)
    fig = dm.plot(dm.dataset("train")[0], prediction=1)
    assert "pred" in fig.axes[0].get_title()
    plt.close(fig)
