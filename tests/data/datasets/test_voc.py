"""``VOCSegmentation`` on tiny VOC-layout folders written by the tests: palette indices read as labels (never
through colours), image labels derived from the masks, nearest-neighbour masks, one joint crop and flip
for image and mask, the VOC palette, and one-line errors naming the input and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.data.voc_files import SIZES, save_palette_png, voc_id, voc_mask, write_voc
from visionkit.data.datasets import VOC_CLASSES, VOCFileError, VOCSegmentation, colorize, voc_palette
from visionkit.data.datasets.voc import JointCropFlip, read_voc_mask
from visionkit.data.errors import DatasetNotFoundError, ImageReadError
from visionkit.errors import ConfigValueError, one_line


def expected_label(i: int) -> list[float]:
    label = [0.0] * 20
    for c in np.unique(voc_mask(i)).tolist():
        if 1 <= c <= 20:
            label[c - 1] = 1.0
    return label


def test_items_have_resized_image_mask_and_labels_from_the_mask(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC2012")
    data = VOCSegmentation(root, "train", image_size=16)
    assert len(data) == 4 and data.num_classes == 20 and data.num_mask_classes == 21
    assert data.classes == list(VOC_CLASSES[1:]) and data.mask_classes[0] == "background"
    for i in range(4):
        item = data[i]
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
        assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
        assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
        assert set(item["mask"].unique().tolist()) <= set(np.unique(voc_mask(i)).tolist())
        assert item["label"].dtype == torch.float32 and item["label"].tolist() == expected_label(i)
        assert int(item["index"]) == i and Path(item["path"]) == root / "JPEGImages" / f"{voc_id(i)}.jpg"
        width, height = SIZES[i % 3]
        assert item["orig_size"].tolist() == [height, width]
    assert expected_label(1) == [1.0 if c in (4, 11) else 0.0 for c in range(1, 21)]  # two classes in image 1


def test_native_size_reads_palette_indices_whatever_the_colours(tmp_path: Path) -> None:
    root = write_voc(tmp_path, count=5)  # masks saved with a random palette: only the indices mean anything
    item = VOCSegmentation(root, "val", image_size=None)[0]  # image 4
    assert torch.equal(item["mask"], torch.from_numpy(voc_mask(4).astype(np.int64)))
    assert item["image"].shape == (3, SIZES[1][1], SIZES[1][0])
    assert (item["mask"] == 255).any()  # the ignore border is kept


def test_masks_are_resized_by_nearest_neighbour(tmp_path: Path) -> None:
    root = write_voc(tmp_path, count=3, splits={"train": [2]})  # image 2 is 32 x 32
    up = VOCSegmentation(root, image_size=64)[0]["mask"]
    native = torch.from_numpy(voc_mask(2).astype(np.int64))
    assert torch.equal(up, native.repeat_interleave(2, 0).repeat_interleave(2, 1))
    down = VOCSegmentation(root, image_size=16)[0]["mask"]
    assert torch.equal(down, native[::2, ::2]) or torch.equal(down, native[1::2, 1::2])


def test_aug_masks_and_deeplab_style_lists(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOCdevkit" / "VOC2012", masks="SegmentationClassAug", splits={"train_aug": [0, 1, 2]})
    lines = "".join(f"/JPEGImages/{voc_id(i)}.jpg /SegmentationClassAug/{voc_id(i)}.png\n" for i in (1, 2))
    (root / "ImageSets" / "Segmentation" / "pairs.txt").write_text(lines + "\n")
    data = VOCSegmentation(tmp_path, "train_aug", masks="SegmentationClassAug", image_size=None)  # found under VOCdevkit/
    assert data.ids == [voc_id(i) for i in range(3)] and data.root == root
    assert torch.equal(data[1]["mask"], torch.from_numpy(voc_mask(1).astype(np.int64)))
    assert VOCSegmentation(root, "pairs", masks="SegmentationClassAug").ids == [voc_id(1), voc_id(2)]
    listed = VOCSegmentation(root, str(root / "ImageSets" / "Segmentation" / "pairs.txt"), "SegmentationClassAug")
    assert len(listed) == 2


def test_joint_crop_flip_moves_image_and_mask_together() -> None:
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[:32, 32:], mask[32:, :32], mask[32:, 32:] = 1, 2, 3
    image = (mask.float() / 3)[None].repeat(3, 1, 1)
    crop, no_flip = JointCropFlip(48, scale=(0.3, 1.0)), JointCropFlip(48, scale=(0.3, 1.0), flip=False)
    flipped, mirrored_draws = 0, 0
    for seed in range(12):
        out_image, out_mask = crop(image, mask, torch.Generator().manual_seed(seed))
        same_box = no_flip(image, mask, torch.Generator().manual_seed(seed))[1]
        mirrored_draws += not torch.equal(out_mask, same_box)
        assert out_image.shape == (3, 48, 48) and out_mask.shape == (48, 48) and out_mask.dtype == torch.int64
        from_image = (out_image[0] * 3).round().long()
        agree = (from_image == out_mask).float().mean()
        mirrored = (from_image == out_mask.flip(-1)).float().mean()
        assert agree > 0.9, (seed, float(agree))
        flipped += bool(mirrored < 0.8)
    assert flipped > 0  # the crops do differ from their mirror images, so the check above has teeth
    assert 0 < mirrored_draws < 12  # and some draws flip, others do not
    generator_a, generator_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert all(torch.equal(a, b) for a, b in zip(crop(image, mask, generator_a), crop(image, mask, generator_b), strict=True))


def test_augmentation_draws_from_seed_index_and_epoch(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    plain = VOCSegmentation(root, image_size=24)
    data = VOCSegmentation(root, image_size=24, augment=True, crop_scale=(0.2, 0.6))
    first, again, other_epoch = data[(1, 0)], data[(1, 0)], data[(1, 1)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert not torch.equal(first["mask"], other_epoch["mask"]) or not torch.equal(first["image"], other_epoch["image"])
    assert first["label"].tolist() == expected_label(1)  # labels come from the whole mask, before the crop
    assert set(first["mask"].unique().tolist()) <= {0, 4, 11, 255}
    assert torch.equal(data[1]["image"], plain[1]["image"]) and torch.equal(data[1]["mask"], plain[1]["mask"])
    with pytest.raises(ConfigValueError, match="augment needs an image_size"):
        VOCSegmentation(root, image_size=None, augment=True)
    with pytest.raises(ConfigValueError, match=r"crop_scale must be \(min, max\) with 0 < min <= max <= 1, got \(0.5, 1.5\)"):
        VOCSegmentation(root, crop_scale=(0.5, 1.5))


def test_palette_and_colorize_round_trip(tmp_path: Path) -> None:
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette[:21].tolist()}) == 21
    mask = torch.from_numpy(voc_mask(3).astype(np.int64))
    image = colorize(mask)
    assert image.mode == "P"
    image.save(tmp_path / "pred.png")
    assert np.array_equal(read_voc_mask(tmp_path / "pred.png"), voc_mask(3))
    with Image.open(tmp_path / "pred.png") as saved:
        assert np.array_equal(np.asarray(saved.convert("RGB")), palette[voc_mask(3)])
    with pytest.raises(ValueError, match=r"\(H, W\) mask.*got shape \(1, 2, 2\)"):
        colorize(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"values in \[0, 300\]"):
        colorize(np.array([[0, 300]]))


def test_plot_shows_image_mask_and_prediction(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    data = VOCSegmentation(write_voc(tmp_path), image_size=16)
    item = data[1]
    fig = data.plot(item)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "boat, diningtable"  # mask values 4 and 11
    plt.close(fig)
    fig = data.plot(item, prediction=torch.randn(21, 16, 16))
    assert [ax.get_title() for ax in fig.axes[1:]] == ["mask", "prediction"]
    plt.close(fig)


# ---- bad input ----------------------------------------------------------------------------------------
def test_missing_root_folders_and_split_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"^VOCSegmentation root '.*nowhere' does not exist; expected layout"):
        VOCSegmentation(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="has no JPEGImages/ folder"):
        VOCSegmentation(tmp_path / "empty")
    root = write_voc(tmp_path / "aug", masks="SegmentationClassAug")
    with pytest.raises(DatasetNotFoundError, match=r"has no SegmentationClass/ folder of mask PNGs "
                       r"\(SegmentationClassAug/ exists: pass masks='SegmentationClassAug'\)"):
        VOCSegmentation(root)
    root = write_voc(tmp_path / "voc")
    with pytest.raises(DatasetNotFoundError, match=r"has no split file ImageSets/Segmentation/trainval\.txt "
                       r"\(split files present: train, val\)"):
        VOCSegmentation(root, "trainval")
    (root / "ImageSets" / "Segmentation" / "blank.txt").write_text("\n\n")
    with pytest.raises(DatasetNotFoundError, match=r"has an empty split file '.*blank\.txt'"):
        VOCSegmentation(root, "blank")
    with pytest.raises(ConfigValueError, match="masks must be 'SegmentationClass' or 'SegmentationClassAug', got 'Seg'"):
        VOCSegmentation(root, masks="Seg")


def test_listed_ids_without_image_or_mask_are_named(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    (root / "JPEGImages" / f"{voc_id(2)}.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=rf"lacks JPEGImages/{voc_id(2)}\.jpg for id '{voc_id(2)}' listed in "
                       r"'.*train\.txt' \(1 of 4 listed ids lack an image\)"):
        VOCSegmentation(root, "train")
    (root / "SegmentationClass" / f"{voc_id(5)}.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=rf"lacks SegmentationClass/{voc_id(5)}\.png .*\(1 of 2 listed ids lack a mask\)"):
        VOCSegmentation(root, "val")


def test_bad_masks_raise_one_line_naming_the_file(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    bad = voc_mask(0)
    bad[0, :3] = [21, 40, 40]
    save_palette_png(root / "SegmentationClass" / f"{voc_id(0)}.png", bad)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "SegmentationClass" / f"{voc_id(1)}.png")
    save_palette_png(root / "SegmentationClass" / f"{voc_id(2)}.png", np.zeros((5, 6), np.uint8))
    (root / "SegmentationClass" / f"{voc_id(3)}.png").write_bytes(b"not a png")
    data = VOCSegmentation(root, image_size=8)
    with pytest.raises(VOCFileError, match=rf"^VOC mask '.*{voc_id(0)}\.png': holds labels \[21, 40\]; "
                       r"expected class indices 0-20 or 255 \(ignore\)$"):
        data[0]
    with pytest.raises(VOCFileError, match=r"is a mode RGB image; expected a palette \(mode P\) or grey \(mode L\) PNG"):
        data[1]
    with pytest.raises(VOCFileError, match=rf"is 6x5 px but its image '.*{voc_id(2)}\.jpg' is 32x32; expected the same size"):
        data[2]
    with pytest.raises(ImageReadError, match=rf"unreadable image '.*{voc_id(3)}\.png'"):
        data[3]
    with pytest.raises(VOCFileError) as caught:  # from a worker process: same type, same one line
        next(iter(DataLoader(data, num_workers=1)))
    assert one_line(caught.value).startswith("VOC mask '") and "\n" not in str(caught.value)
