"""PASCAL VOC 2012 semantic segmentation read from a local folder (nothing is downloaded).

Layout (``root`` may also be a folder holding ``VOC2012/`` or ``VOCdevkit/VOC2012/``)::

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClass/<id>.png      palette PNGs; their palette INDICES are the labels
    <root>/SegmentationClassAug/<id>.png   (optional, SBD-augmented masks; grey PNGs of the same indices)
    <root>/ImageSets/Segmentation/<split>.txt   one id per line (train, val, trainval, train_aug, ...)

Mask values: 0 background, 1-20 the classes of :data:`VOC_CLASSES`, 255 ignore (object boundaries and
difficult regions). Masks are read as indices (Pillow mode ``P`` or ``L`` straight to an array), never through
their RGB colours. Image-level labels (multi-hot over the 20 foreground classes) are derived from the masks.

:func:`voc_palette` and :func:`colorize` give the official colour coding, for writing predicted masks as
palette PNGs that VOC tools read back as indices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.datasets.decode import read_image
from visionkit.data.datasets.video_base import sample_generator
from visionkit.data.errors import DatasetNotFoundError, FileContentError, ImageReadError
from visionkit.data.samplers import split_key
from visionkit.data.transforms import ClipAugment, resize_frames
from visionkit.errors import ConfigValueError, check_choice

__all__ = [
    "LAYOUT",
    "MASK_FOLDERS",
    "VOC_CLASSES",
    "VOC_FOREGROUND",
    "VOC_IGNORE_INDEX",
    "JointCropFlip",
    "VOCFileError",
    "VOCSegmentation",
    "colorize",
    "read_voc_mask",
    "voc_palette",
]

#: The 21 mask classes in label order: index 0 is the background, 1-20 the object classes.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
#: The 20 object classes: the columns of the multi-hot image label (mask value ``c`` is column ``c - 1``).
VOC_FOREGROUND: tuple[str, ...] = VOC_CLASSES[1:]
#: Mask value of pixels that are not scored (object boundaries, difficult regions).
VOC_IGNORE_INDEX = 255
#: Mask folders a root may hold.
MASK_FOLDERS = ("SegmentationClass", "SegmentationClassAug")
#: Folders searched for ``<split>.txt``, in order.
SPLIT_FOLDERS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug")
#: Image file suffixes tried for an id, in order.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = (
    "<root>/JPEGImages/<id>.jpg, <root>/SegmentationClass/<id>.png (or SegmentationClassAug/) with class indices "
    "0-20 and 255 = ignore, <root>/ImageSets/Segmentation/<split>.txt with one id per line"
)


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: ``(256, 3)`` uint8, row ``i`` the colour of index ``i``.

    Index ``i``'s bits 0, 1, 2 go to the red, green and blue values' top bit, bits 3-5 to the next bit, and
    so on (0 black, 1 (128, 0, 0), 15 person (192, 128, 128), 255 ignore (224, 224, 192)).
    """
    index = np.arange(256)
    colours = np.zeros((256, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            colours[:, channel] |= bit << (7 - shift)
    return colours.astype(np.uint8)


def colorize(mask: Tensor | np.ndarray):
    """A ``(H, W)`` mask of class indices (0-255) as a palette (mode ``P``) PIL image with :func:`voc_palette`.

    Saved as PNG it shows the VOC colours and reads back as the same indices (``np.array(Image.open(p))``).

    Raises:
        ValueError: not a 2-D array, or values outside 0-255.
    """
    from PIL import Image

    arr = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"colorize needs a (H, W) mask of class indices, got shape {tuple(arr.shape)}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError(f"colorize needs class indices in 0-255, got values in [{int(arr.min())}, {int(arr.max())}]")
    image = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    image.putpalette(voc_palette().reshape(-1).tolist())
    return image


class VOCFileError(FileContentError):
    """A VOC mask file with the wrong kind of pixels, labels or size, in one line naming the file."""

    kind = "VOC mask"


def read_voc_mask(path: str | Path, num_classes: int = len(VOC_CLASSES)) -> np.ndarray:
    """The class indices of a mask PNG as a ``(H, W)`` uint8 array (palette or grey PNG, no colour decoding).

    Raises:
        ImageReadError: missing or undecodable file.
        VOCFileError: a colour image (RGB masks are not decoded back to indices), or values that are
            neither below ``num_classes`` nor :data:`VOC_IGNORE_INDEX` (the message lists them).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            arr = np.array(image) if mode in ("P", "L") else None
    except Exception as err:  # noqa: BLE001 - Pillow raises many types; all mean "unreadable"
        raise ImageReadError(path, err) from err
    if arr is None:
        raise VOCFileError(
            path, f"is a mode {mode} image; expected a palette (mode P) or grey (mode L) PNG of class indices"
        )
    values = np.unique(arr)
    bad = values[(values >= num_classes) & (values != VOC_IGNORE_INDEX)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise VOCFileError(
            path,
            f"holds labels [{shown}]; expected class indices 0-{num_classes - 1} or {VOC_IGNORE_INDEX} (ignore)",
        )
    return arr


def find_voc_root(root: str | Path) -> Path:
    """The folder holding ``JPEGImages/``: ``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``.

    Raises:
        DatasetNotFoundError: ``root`` is missing or none of these holds ``JPEGImages/``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError("VOCSegmentation", root, LAYOUT, "is not a folder" if root.exists() else "does not exist")
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetNotFoundError("VOCSegmentation", root, LAYOUT, "has no JPEGImages/ folder")


def split_files(root: Path) -> dict[str, Path]:
    """``{name: path}`` of the ``<name>.txt`` files in the split folders of ``root`` (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in SPLIT_FOLDERS:
        if (root / folder).is_dir():
            for path in sorted((root / folder).glob("*.txt")):
                found.setdefault(path.stem, path)
    return found


def read_split(root: Path, split: str) -> tuple[Path, list[str]]:
    """The split file of ``split`` (a name under ``ImageSets/Segmentation/`` or a path to a ``.txt``) and its ids.

    Each non-empty line gives one id: its first field, reduced to the file stem when it is a path (the
    ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` lines of the DeepLab lists work too).

    Raises:
        DatasetNotFoundError: no such split file (the message lists those present), or it lists no ids.
    """
    present = split_files(root)
    direct = Path(split)
    if split in present:
        path = present[split]
    elif direct.suffix == ".txt" and direct.is_file():
        path = direct
    else:
        names = ", ".join(sorted(present)) or "none"
        reason = f"has no split file {SPLIT_FOLDERS[0]}/{split}.txt (split files present: {names})"
        raise DatasetNotFoundError("VOCSegmentation", root, LAYOUT, reason)
    ids = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            ids.append(Path(fields[0]).stem if "/" in fields[0] else fields[0])
    if not ids:
        raise DatasetNotFoundError("VOCSegmentation", root, LAYOUT, f"has an empty split file '{path}'")
    return path, ids


def _files_by_id(folder: Path, suffixes: Sequence[str]) -> dict[str, str]:
    """``{stem: file name}`` of the files in ``folder`` with one of ``suffixes`` (the earlier suffix wins)."""
    rank = {s: i for i, s in enumerate(suffixes)}
    best: dict[str, str] = {}
    for name in os.listdir(folder):
        stem, suffix = os.path.splitext(name)
        suffix = suffix.lower()
        if suffix in rank and (stem not in best or rank[suffix] < rank[os.path.splitext(best[stem])[1].lower()]):
            best[stem] = name
    return best


class JointCropFlip:
    """A random resized crop and horizontal flip drawn once and applied alike to an image and its mask.

    The crop box is drawn as :class:`~visionkit.data.transforms.ClipAugment` draws it; the image is resized
    bilinearly (antialiased), the mask with exact nearest-neighbour sampling, so it only holds values of the
    input (255 stays 255). All draws come from the caller's generator.

    Args:
        size: output side in pixels.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        flip: flip both horizontally with probability 0.5.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True
    ) -> None:
        self.boxes = ClipAugment(size, scale, ratio, flip=False)
        self.size, self.flip = size, flip

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(C, H, W)`` float image and ``(H, W)`` integer mask -> ``(C, size, size)`` and ``(size, size)``."""
        top, left, h, w = self.boxes.crop_box(image.shape[-2], image.shape[-1], generator)
        out_size = [self.size, self.size]
        image = TF.resized_crop(image, top, left, h, w, out_size, antialias=True).clamp(0, 1)
        mask = TF.resized_crop(mask[None], top, left, h, w, out_size, InterpolationMode.NEAREST_EXACT)[0]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


def resize_mask(mask: Tensor, size: int) -> Tensor:
    """Exact nearest-neighbour resize of a ``(H, W)`` mask to ``(size, size)`` (Pillow's ``NEAREST`` sampling)."""
    if mask.shape == (size, size):
        return mask
    return TF.resize(mask[None], [size, size], InterpolationMode.NEAREST_EXACT)[0]


class VOCSegmentation(VisionDataset):
    """PASCAL VOC 2012 segmentation: images, per-pixel masks and image labels derived from the masks.

    Args:
        root: the VOC2012 folder (see :mod:`visionkit.data.datasets.voc` for the layout).
        split: a split file name under ``ImageSets/Segmentation/`` (or ``ImageSets/SegmentationAug/``)
            without ``.txt``: ``train``, ``val``, ``trainval``, ``train_aug``, ...; or a path to a ``.txt`` file.
        masks: ``"SegmentationClass"`` (palette PNGs) or ``"SegmentationClassAug"`` (grey PNGs).
        image_size: image and mask are squashed to ``image_size`` x ``image_size`` (image bilinear, mask
            nearest); ``None`` keeps each file's size (batches then need equal sizes: batch size 1).
        augment: when the key carries an epoch (training loaders of
            :class:`~visionkit.data.datamodules.VOCSegmentationDataModule`), a :class:`JointCropFlip` to
            ``image_size`` replaces the resize; needs ``image_size``.
        crop_scale: area range of the training crop, as a fraction of the image.
        seed: seed of the augmentation draws (with the item's index and epoch).

    Items:

    - ``image`` float32 ``(3, H, W)`` in [0, 1];
    - ``mask`` int64 ``(H, W)``: 0 background, 1-20 classes, 255 ignore;
    - ``label`` float32 ``(20,)`` multi-hot of the foreground classes present in the file's whole mask
      (before any crop or resize; 0 and 255 do not count), column ``c - 1`` for mask value ``c``;
    - ``index`` int64, ``path`` str (the image file), ``orig_size`` int64 ``(2,)`` the file's ``(H, W)``.

    ``classes`` are the 20 foreground names (the label columns, as in
    :class:`~visionkit.data.datasets.SyntheticMultiShapes`); ``mask_classes`` the 21 mask classes.

    Raises:
        DatasetNotFoundError: no root, no ``JPEGImages/`` or mask folder, no such split file (the present
            ones are listed), or a listed id without its image or mask file.
        VOCFileError: (when an item is read) a mask that is not a palette/grey PNG, holds labels that are
            neither 0-20 nor 255, or differs in size from its image.
    """

    classes = list(VOC_FOREGROUND)
    mask_classes = list(VOC_CLASSES)
    ignore_index = VOC_IGNORE_INDEX

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        masks: str = "SegmentationClass",
        image_size: int | None = 320,
        augment: bool = False,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        seed: int = 0,
    ) -> None:
        check_choice("masks", masks, MASK_FOLDERS, ConfigValueError)
        if image_size is not None and image_size < 1:
            raise ConfigValueError(f"image_size must be a positive integer (pixels) or None, got {image_size}")
        if not (len(crop_scale) == 2 and 0 < crop_scale[0] <= crop_scale[1] <= 1):
            raise ConfigValueError(f"crop_scale must be (min, max) with 0 < min <= max <= 1, got {tuple(crop_scale)}")
        if augment and image_size is None:
            raise ConfigValueError("augment needs an image_size (the side of the training crops)")
        self.root = find_voc_root(root)
        mask_dir = self.root / masks
        if not mask_dir.is_dir():
            others = [m for m in MASK_FOLDERS if m != masks and (self.root / m).is_dir()]
            hint = f" ({others[0]}/ exists: pass masks='{others[0]}')" if others else ""
            raise DatasetNotFoundError("VOCSegmentation", self.root, LAYOUT, f"has no {masks}/ folder of mask PNGs{hint}")
        self.split_file, ids = read_split(self.root, split)
        images = _files_by_id(self.root / "JPEGImages", IMAGE_SUFFIXES)
        pngs = _files_by_id(mask_dir, (".png",))
        for folder, files, what in (("JPEGImages", images, "an image"), (masks, pngs, "a mask")):
            missing = [i for i in ids if i not in files]
            if missing:
                expected = f"{folder}/{missing[0]}{'.jpg' if folder == 'JPEGImages' else '.png'}"
                reason = (
                    f"lacks {expected} for id '{missing[0]}' listed in '{self.split_file}' "
                    f"({len(missing)} of {len(ids)} listed ids lack {what})"
                )
                raise DatasetNotFoundError("VOCSegmentation", self.root, LAYOUT, reason)
        self.ids, self.split, self.masks = ids, split, masks
        self.image_paths = [self.root / "JPEGImages" / images[i] for i in ids]
        self.mask_paths = [mask_dir / pngs[i] for i in ids]
        self.image_size, self.augment, self.seed = image_size, augment, seed
        self.crop = JointCropFlip(image_size, tuple(crop_scale)) if image_size is not None else None

    @property
    def num_mask_classes(self) -> int:
        """Classes of the masks, background included (21)."""
        return len(self.mask_classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = split_key(key)
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image = read_image(image_path)
        mask = read_voc_mask(mask_path, self.num_mask_classes)
        height, width = image.shape[-2:]
        if mask.shape != (height, width):
            raise VOCFileError(
                mask_path, f"is {mask.shape[1]}x{mask.shape[0]} px but its image '{image_path}' is {width}x{height}; "
                "expected the same size",
            )
        present = np.unique(mask)
        label = np.zeros(len(self.classes), np.float32)
        label[present[(present >= 1) & (present < self.num_mask_classes)].astype(np.int64) - 1] = 1.0
        target = torch.from_numpy(mask.astype(np.int64))
        generator = sample_generator(self.seed, index, epoch) if self.augment else None
        if generator is not None and self.crop is not None:
            image, target = self.crop(image, target, generator)
        elif self.image_size is not None:
            image = resize_frames(image[None], self.image_size)[0]
            target = resize_mask(target, self.image_size)
        return {
            "image": image,
            "mask": target,
            "label": torch.from_numpy(label),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(image_path),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }

    def plot(self, sample: dict[str, Any], prediction: Tensor | None = None):
        """Image | mask in VOC colours (| ``prediction``: a ``(H, W)`` mask or ``(21, H, W)`` scores), titled
        with the image's classes; returns a matplotlib Figure."""
        from visionkit.utils.viz import pyplot, to_rgb

        plt = pyplot()
        palette = voc_palette()
        panels = [("image", to_rgb(sample["image"][None])[0].permute(1, 2, 0).numpy())]
        panels.append(("mask", palette[sample["mask"].long().clamp(0, 255).numpy()]))
        if prediction is not None:
            pred = prediction.argmax(0) if prediction.ndim == 3 else prediction
            panels.append(("prediction", palette[pred.long().clamp(0, 255).cpu().numpy()]))
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), squeeze=False)
        names = [self.classes[i] for i in sample["label"].nonzero().flatten().tolist()] if "label" in sample else []
        for ax, (title, pixels) in zip(axes[0], panels, strict=True):
            ax.imshow(pixels)
            ax.set_title(", ".join(names) if title == "image" else title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        return fig
