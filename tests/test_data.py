"""The dataset zoo: determinism, label/mask agreement, splits, on-disk folders and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from visionkit.data import DatasetNotFoundError, ImageReadError
from visionkit.data.datamodules import (
    DigitsDataModule,
    ImageFolderDataModule,
    SyntheticMultiShapesDataModule,
    SyntheticShapesDataModule,
)
from visionkit.data.datasets import SHAPES, Digits, ImageFolder, SyntheticMultiShapes, SyntheticShapes
from visionkit.data.datasets.synthetic_shapes import shape_mask
from visionkit.data.samplers import EpochSeededSampler


def write_image_folder(root: Path, classes: tuple[str, ...] = ("a", "b"), per_class: int = 6, size: int = 20) -> Path:
    """Write a small class-folder dataset of PNGs with seeded colours."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.full((size, size, 3), 40 + 160 * c, np.uint8) + rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:02d}.png")
    return root


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


def test_splits_are_disjoint_streams() -> None:
    dm = SyntheticShapesDataModule(num_train=20, num_val=20, num_test=20)
    train, val = dm.dataset("train"), dm.dataset("val")
    assert not any(torch.equal(train[i]["image"], val[i]["image"]) for i in range(20))
    assert dm.num_classes == 4 and dm.in_channels == 3 and dm.image_size == 32


def test_epoch_seeded_sampler() -> None:
    s = EpochSeededSampler(10, seed=0)
    first = list(s)
    assert sorted(first) == list(range(10)) and list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


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


def test_image_folder_split_by_fraction(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data")
    dm = ImageFolderDataModule(str(root), val_fraction=0.25, image_size=16)
    assert dm.num_classes == 2
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 9 and len(val) == 3
    s = train[0]
    assert s["image"].shape == (3, 16, 16) and s["image"].max() <= 1


def test_image_folder_split_folders(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "d" / "train", per_class=3)
    write_image_folder(tmp_path / "d" / "val", per_class=2)
    dm = ImageFolderDataModule(str(tmp_path / "d"), image_size=8)
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 4 and len(dm.dataset("test")) == 4
    (tmp_path / "e" / "train").mkdir(parents=True)
    write_image_folder(tmp_path / "e" / "train")
    with pytest.raises(DatasetNotFoundError, match="val"):
        ImageFolderDataModule(str(tmp_path / "e"))


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist; expected layout"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolder(tmp_path / "empty")
    root = write_image_folder(tmp_path / "ok", per_class=1)
    (root / "a" / "00.png").write_bytes(b"garbage")
    data = ImageFolder(root, image_size=8)
    with pytest.raises(ImageReadError, match=r"unreadable image '.*00\.png'"):
        data[0]


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
