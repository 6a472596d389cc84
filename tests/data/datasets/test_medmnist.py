"""MedMNIST reader: file names, sample format, channels and resizing, multi-label, and every bad-file message."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.medmnist_files import medmnist_arrays, write_medmnist
from visionkit.data.datasets import MedMNIST, MedMNISTFileError
from visionkit.data.datasets.medmnist import inspect_medmnist, medmnist_file
from visionkit.data.errors import DatasetNotFoundError


def test_grey_file_samples(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organamnist")
    data = MedMNIST(tmp_path, "organamnist", "train")
    assert len(data) == 12 and data.in_channels == 1 and data.image_size == 28
    assert data.classes == ["0", "1", "2"] and data.num_classes == 3
    s = data[5]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (1, 28, 28)
    assert torch.allclose(s["image"], torch.full((1, 28, 28), 50 / 255))
    assert s["label"].dtype == torch.int64 and s["label"].ndim == 0 and int(s["label"]) == 5 % 3
    assert s["index"].dtype == torch.int64 and int(s["index"]) == 5
    assert len(MedMNIST(tmp_path, "organamnist", "test")) == 6
    assert "medmnist" not in sys.modules, "the medmnist package must never be imported"


def test_rgb_file_channels_and_resize(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "pathmnist", size=64, side=64, rgb=True)
    data = MedMNIST(tmp_path, "pathmnist", "val", size=64)
    s = data[3]
    assert data.in_channels == 3 and s["image"].shape == (3, 64, 64)
    assert torch.allclose(s["image"][:, 0, 0], torch.tensor([30, 31, 32]) / 255)
    grey = MedMNIST(tmp_path, "pathmnist", "val", size=64, channels=1, image_size=32)[3]["image"]
    assert grey.shape == (1, 32, 32)
    assert torch.allclose(grey, torch.full_like(grey, (0.299 * 30 + 0.587 * 31 + 0.114 * 32) / 255), atol=1e-5)


def test_grey_to_three_channels_and_upsampling_stay_in_range(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "breastmnist")
    s = MedMNIST(tmp_path, "breastmnist", channels=3, image_size=40)[11]
    assert s["image"].shape == (3, 40, 40)
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert torch.equal(s["image"][0], s["image"][2])


def test_file_names_by_size(tmp_path: Path) -> None:
    plain = write_medmnist(tmp_path, "bloodmnist")
    assert medmnist_file(tmp_path, "bloodmnist") == plain
    assert medmnist_file(tmp_path, "bloodmnist", 28) == plain, "28 px files are named {flag}.npz"
    sized = write_medmnist(tmp_path, "bloodmnist", size=28)
    assert medmnist_file(tmp_path, "bloodmnist", 28) == sized


def test_multi_label_file(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    data = MedMNIST(tmp_path, "chestmnist", "train", multi_label=True)
    s = data[2]
    assert s["label"].dtype == torch.float32 and s["label"].shape == (14,)
    assert set(s["label"].unique().tolist()) <= {0.0, 1.0}
    assert data.num_classes == 14


def test_uncompressed_file_and_flat_labels(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays = {k: (v[:, 0] if k.endswith("labels") else v) for k, v in arrays.items()}  # (N,) labels
    np.savez(tmp_path / "dermamnist.npz", **arrays)
    data = MedMNIST(tmp_path, "dermamnist", "test")
    assert int(data[4]["label"]) == 1 and data.num_classes == 3


def test_plot_returns_figure(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    write_medmnist(tmp_path, "organamnist")
    data = MedMNIST(tmp_path, "organamnist", classes=["liver", "kidney", "lung"])
    fig = data.plot(data[1], prediction=2)
    assert fig.axes[0].get_title() == "kidney\npred: lung"
    plt.close(fig)
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    chest = MedMNIST(tmp_path, "chestmnist", multi_label=True)
    plt.close(chest.plot(chest[0]))


# -- bad inputs: one line that names the input and what was expected


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_file_names_the_path_and_the_expected_names(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organamnist")
    with pytest.raises(DatasetNotFoundError) as err:
        MedMNIST(tmp_path, "organamnist", size=64)
    text = _one_line(err)
    assert str(tmp_path / "organamnist_64.npz") in text and "<flag>_<size>.npz" in text and "<flag>.npz" in text
    with pytest.raises(DatasetNotFoundError) as err:
        MedMNIST(tmp_path / "nowhere", "organamnist")
    assert "does not exist" in _one_line(err) and "nowhere" in str(err.value)


@pytest.mark.parametrize("key", ["train_images", "val_labels", "test_images"])
def test_missing_key_names_the_key_and_the_file(tmp_path: Path, key: str) -> None:
    path = write_medmnist(tmp_path, "organamnist", drop=(key,))
    with pytest.raises(MedMNISTFileError) as err:
        MedMNIST(tmp_path, "organamnist", "train")
    text = _one_line(err)
    assert f"no key '{key}'" in text and str(path) in text


def test_3d_volumes_are_refused(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "organmnist3d", depth=28)
    with pytest.raises(MedMNISTFileError) as err:
        MedMNIST(tmp_path, "organmnist3d")
    text = _one_line(err)
    assert str(path) in text and "3D volumes" in text and "2D" in text and "(N, D, H, W)" in text


def test_multi_label_file_in_a_single_label_dataset(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    with pytest.raises(MedMNISTFileError) as err:
        MedMNIST(tmp_path, "chestmnist")
    text = _one_line(err)
    assert "multi-label" in text and "multi_label=False" in text and "multi_label=True" in text and "14" in text


def test_single_label_file_read_as_multi_label(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organamnist")
    with pytest.raises(MedMNISTFileError, match="multi_label=True expects"):
        MedMNIST(tmp_path, "organamnist", multi_label=True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a.update(train_images=a["train_images"].astype(np.float32)), "dtype float32; expected uint8"),
        (lambda a: a.update(val_labels=a["val_labels"][:3]), "'val_labels' has shape (3, 1); expected (6, 1)"),
        (lambda a: a.update(test_labels=a["test_labels"].astype(np.float32)), "expected integer labels"),
        (lambda a: a.update(test_labels=a["test_labels"].astype(np.int64) - 1), "negative class index -1"),
        (lambda a: a.update(val_images=a["val_images"][:, :20]), "expected square ones"),
        (lambda a: a.update(val_images=a["val_images"][:, :14, :14], val_labels=a["val_labels"]), "different sizes"),
        (lambda a: a.update(train_images=a["train_images"][0]), "expected grey (N, H, W) or RGB (N, H, W, 3)"),
        (lambda a: a.update(test_images=a["test_images"][:0], test_labels=a["test_labels"][:0]), "holds no images"),
    ],
    ids=["float-pixels", "label-count", "float-labels", "negative-label", "not-square", "mixed-sizes", "2d-array",
         "empty-split"],
)
def test_bad_arrays(tmp_path: Path, change, expected: str) -> None:
    arrays = medmnist_arrays()
    change(arrays)
    path = tmp_path / "organamnist.npz"
    np.savez(path, **arrays)
    with pytest.raises(MedMNISTFileError) as err:
        inspect_medmnist(path)
    text = _one_line(err)
    assert expected in text and str(path) in text


def test_not_an_npz_archive(tmp_path: Path) -> None:
    (tmp_path / "organamnist.npz").write_text("not an archive")
    with pytest.raises(MedMNISTFileError, match="cannot be read as a NumPy .npz archive"):
        MedMNIST(tmp_path, "organamnist")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "bloodmnist.npz")
    with pytest.raises(MedMNISTFileError, match="holds a single array"):
        MedMNIST(tmp_path, "bloodmnist")


def test_bad_arguments(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organamnist")
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test', got 'dev'"):
        MedMNIST(tmp_path, "organamnist", "dev")
    with pytest.raises(ValueError, match="channels must be None .* got 2"):
        MedMNIST(tmp_path, "organamnist", channels=2)
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        MedMNIST(tmp_path, "organamnist", image_size=0)
    with pytest.raises(ValueError, match="classes has 2 names, but .* holds 3 classes"):
        MedMNIST(tmp_path, "organamnist", classes=["a", "b"])
    write_medmnist(tmp_path, "chestmnist", label_columns=14)
    with pytest.raises(ValueError, match="classes has 15 names, but .* 14 label columns"):
        MedMNIST(tmp_path, "chestmnist", multi_label=True, classes=[str(i) for i in range(15)])
