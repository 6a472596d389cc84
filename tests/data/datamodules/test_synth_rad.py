"""``SynthRadDataModule``: split sizes per class, disjoint split streams, the unseen-concept task, checks, CLI."""

from __future__ import annotations

import sys

import pytest
import torch

from visionkit.data.datamodules import SynthRadDataModule
from visionkit.data.datasets import SynthRad
from visionkit.data.datasets.base import InMemoryCache


def test_pretrain_defaults() -> None:
    dm = SynthRadDataModule()
    assert {s: len(dm.dataset(s)) for s in ("train", "val", "test")} == {"train": 1800, "val": 600, "test": 600}
    assert dm.sizes == {"train": 1800, "val": 600, "test": 600}
    assert dm.num_classes == 12 and dm.in_channels == 1 and dm.image_size == 32 and dm.task == "multiclass"
    assert dm.class_names[0] == "CT__disc" and dm.class_names == dm.classes == dm.dataset("train").classes


def test_unseen_shots() -> None:
    dm = SynthRadDataModule(task="unseen")
    assert dm.num_classes == 6 and dm.label_space == "unseen"
    assert {s: len(dm.dataset(s)) for s in ("train", "val", "test")} == {"train": 60, "val": 300, "test": 600}
    dm = SynthRadDataModule(task="unseen", shots=5, val_per_class=2, test_per_class=3, channels=3, image_size=24)
    labels = torch.stack([dm.dataset("train")[i]["label"] for i in range(30)])
    assert torch.bincount(labels).tolist() == [5] * 6
    assert dm.dataset("test")[0]["image"].shape == (3, 24, 24) and dm.in_channels == 3


def test_splits_are_disjoint_and_balanced() -> None:
    dm = SynthRadDataModule(train_per_class=2, val_per_class=2, test_per_class=2, seed=5)
    seen: set[bytes] = set()
    for split in ("train", "val", "test"):
        data = dm.dataset(split)
        assert torch.bincount(torch.tensor([data[i]["label"] for i in range(len(data))])).tolist() == [2] * 12
        for i in range(len(data)):
            key = data[i]["image"].numpy().tobytes()
            assert key not in seen, f"{split} item {i} repeats an image of another split"
            seen.add(key)
    other = SynthRadDataModule(train_per_class=2, val_per_class=2, test_per_class=2, seed=5, cache=False)
    assert torch.equal(other.dataset("val")[3]["image"], dm.dataset("val")[3]["image"]), "cached = drawn again"
    assert isinstance(dm.dataset("val"), InMemoryCache) and isinstance(other.dataset("val"), SynthRad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="task must be 'pretrain' or 'unseen', got 'pre'"):
        SynthRadDataModule(task="pre")
    with pytest.raises(ValueError, match="train_per_class applies to task='pretrain'.*got train_per_class=20"):
        SynthRadDataModule(task="unseen", train_per_class=20)
    with pytest.raises(ValueError, match="shots must be a positive integer .*, got 0"):
        SynthRadDataModule(task="unseen", shots=0)
    with pytest.raises(ValueError, match="train_per_class must be a positive integer .*, got 0"):
        SynthRadDataModule(train_per_class=0)
    with pytest.raises(ValueError, match="val_per_class must be a positive integer .*, got -1"):
        SynthRadDataModule(val_per_class=-1)
    with pytest.raises(ValueError, match="test_per_class must be a positive integer .*, got 0"):
        SynthRadDataModule(test_per_class=0)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        SynthRadDataModule(channels=2)
    with pytest.raises(ValueError, match="image_size must be at least 16 px, got 8"):
        SynthRadDataModule(image_size=8)


def test_plot_returns_figure() -> None:
    import matplotlib.pyplot as plt

    dm = SynthRadDataModule(task="unseen", shots=1, val_per_class=1, test_per_class=1)
    fig = dm.plot(dm.dataset("train")[4], prediction=5)
    assert fig.axes[0].get_title() == "US__triangle\npred: US__cross"
    plt.close(fig)


def test_cli_resolves_the_short_name(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from visionkit.cli import main

    monkeypatch.setattr(sys, "argv", ["visionkit"])  # the arguments are main's, not pytest's

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "ClassificationTask", "--data", "SynthRadDataModule", "--data.task", "unseen",
              "--data.shots", "5", "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: visionkit.data.datamodules.SynthRadDataModule" in out and "shots: 5" in out
