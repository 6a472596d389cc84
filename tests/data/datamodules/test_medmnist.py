"""``MedMNISTDataModule``: the file's own splits, native and resized image sizes, multi-label, early errors, CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tests.data.medmnist_files import write_medmnist
from visionkit.data.datamodules import MedMNISTDataModule
from visionkit.data.datasets import MedMNISTFileError
from visionkit.data.errors import DatasetNotFoundError


def test_splits_of_the_file(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organamnist", num_classes=4)
    dm = MedMNISTDataModule(str(tmp_path), "organamnist", batch_size=4)
    assert {s: len(dm.dataset(s)) for s in ("train", "val", "test")} == {"train": 12, "val": 6, "test": 6}
    assert dm.num_classes == 4 and dm.in_channels == 1 and dm.image_size == 28 and dm.task == "multiclass"
    assert dm.class_names == ["0", "1", "2", "3"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 28, 28) and batch["label"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    assert torch.allclose(val["image"][:, 0, 0, 0], torch.tensor([0, 10, 20, 30]) / 255), "val in file order"


def test_sized_rgb_file_to_grey_and_resized(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "bloodmnist", size=64, side=64, rgb=True)
    dm = MedMNISTDataModule(str(tmp_path), "bloodmnist", size=64)
    assert dm.in_channels == 3 and dm.image_size == 64
    dm = MedMNISTDataModule(str(tmp_path), "bloodmnist", size=64, channels=1, image_size=32)
    assert dm.in_channels == 1 and dm.dataset("test")[0]["image"].shape == (1, 32, 32)


def test_multi_label(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    dm = MedMNISTDataModule(str(tmp_path), "chestmnist", multi_label=True)
    assert dm.task == "multilabel" and dm.num_classes == 14
    assert dm.dataset("val")[0]["label"].shape == (14,)


def test_errors_come_at_construction(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    with pytest.raises(MedMNISTFileError, match="multi-label labels of shape .*multi_label=False"):
        MedMNISTDataModule(str(tmp_path), "chestmnist")
    with pytest.raises(DatasetNotFoundError, match=r"has no file '.*chestmnist_128\.npz'"):
        MedMNISTDataModule(str(tmp_path), "chestmnist", size=128, multi_label=True)
    write_medmnist(tmp_path, "pneumoniamnist", drop=("test_labels",))
    with pytest.raises(MedMNISTFileError, match="no key 'test_labels'"):
        MedMNISTDataModule(str(tmp_path), "pneumoniamnist")
    with pytest.raises(ValueError, match="channels must be None .*, got 4"):
        MedMNISTDataModule(str(tmp_path), "chestmnist", multi_label=True, channels=4)
    with pytest.raises(ValueError, match="classes has 2 names"):
        MedMNISTDataModule(str(tmp_path), "chestmnist", multi_label=True, classes=["a", "b"])


def test_plot_returns_figure(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    write_medmnist(tmp_path, "organamnist")
    dm = MedMNISTDataModule(str(tmp_path), "organamnist", classes=["liver", "kidney", "lung"])
    fig = dm.plot(dm.dataset("train")[2], prediction=0)
    assert fig.axes[0].get_title() == "lung\npred: liver"
    plt.close(fig)


def test_cli_resolves_the_short_name(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from visionkit.cli import main

    monkeypatch.setattr(sys, "argv", ["visionkit"])  # the arguments are main's, not pytest's

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "ClassificationTask", "--data", "MedMNISTDataModule", "--data.root", str(tmp_path),
              "--data.flag", "breastmnist", "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: visionkit.data.datamodules.MedMNISTDataModule" in capsys.readouterr().out
