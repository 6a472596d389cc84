"""Image-text datasets from caption files on disk: a CSV of (image, caption) rows and Karpathy-split JSON.

Every item is one (image, caption) pair; ``image_id`` numbers the distinct images ``0..num_images-1``
so that retrieval metrics can group the captions of one image. Files are validated when the dataset is
built (columns, empty captions, that every image file exists), so a bad file fails before training.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visionkit.data.datasets.base import VisionDataset
from visionkit.data.datasets.image_folder import read_image
from visionkit.data.errors import CaptionFileError, DatasetNotFoundError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSV_LAYOUT = (
    "a CSV file with a header row, one (image, caption) pair per row; image paths are absolute or "
    "relative to image_root (default: the CSV's folder)"
)
KARPATHY_LAYOUT = (
    'a Karpathy-split JSON {"images": [{"filepath": <sub-folder, optional>, "filename": ..., '
    '"split": "train"|"restval"|"val"|"test", "sentences": [{"raw": <caption>}, ...]}, ...]}'
)
KARPATHY_SPLITS = ("train", "restval", "val", "test")


class CaptionDataset(VisionDataset):
    """Base of image-text datasets: items ``image`` float32 ``(3, H, W)`` in [0, 1], ``caption`` str and
    ``image_id`` int64 scalar (index of the distinct image), ``index`` int64 scalar (position of the pair)
    and, for file datasets, ``path`` str (the image file). Subclasses set ``captions`` (one per item)
    and ``num_images``. There are no classes.
    """

    classes: list[str] = []
    captions: list[str]
    num_images: int

    def plot(self, sample: dict[str, Any], prediction: Any = None) -> Figure:
        """Draw ``sample["image"]`` titled with its caption (wrapped); ``prediction`` (e.g. a retrieved
        caption) is added below it. Returns a matplotlib Figure."""
        import matplotlib.pyplot as plt

        from visionkit.utils.viz import to_rgb

        fig, ax = plt.subplots(figsize=(3.5, 3.8))
        ax.imshow(to_rgb(sample["image"][None])[0].permute(1, 2, 0).numpy())
        title = _wrap(str(sample["caption"]))
        if prediction is not None:
            title += "\n" + _wrap(f"pred: {prediction}")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.tight_layout()
        return fig


def _wrap(text: str, width: int = 40, max_chars: int = 240) -> str:
    """``text`` shortened to ``max_chars`` and wrapped to lines of ``width`` characters."""
    return textwrap.fill(textwrap.shorten(text, max_chars, placeholder=" ..."), width)


class _CaptionFiles(CaptionDataset):
    """Shared storage of the file-based datasets: image paths, one ``(image_id, caption)`` per item."""

    def __init__(self, image_size: int) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        self.image_size = image_size
        self.image_paths: list[Path] = []
        self.image_ids: list[int] = []
        self.captions: list[str] = []
        self._ids: dict[str, int] = {}

    @property
    def num_images(self) -> int:
        """Number of distinct images."""
        return len(self.image_paths)

    def _add(self, image: Path, caption: str) -> None:
        key = os.path.normpath(image)
        if key not in self._ids:
            self._ids[key] = len(self.image_paths)
            self.image_paths.append(image)
        self.image_ids.append(self._ids[key])
        self.captions.append(caption)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        return {
            "image": read_image(self.image_paths[image_id], self.image_size),
            "caption": self.captions[index],
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(self.image_paths[image_id]),
        }


def _check_file(name: str, path: Path, layout: str) -> None:
    if not path.is_file():
        raise DatasetNotFoundError(name, path, layout, "is not a file" if path.exists() else "does not exist")


def _check_root(name: str, root: Path, source: Path) -> None:
    if not root.is_dir():
        layout = f"a folder holding the images that '{source}' names"
        raise DatasetNotFoundError(f"{name} image_root", root, layout, "is not a folder")


def read_caption_csv(
    path: Path, columns: tuple[str, ...], delimiter: str = ","
) -> list[tuple[int, int, list[str]]]:
    """``(data_row, line, values)`` per non-blank data row of a CSV, ``values`` in the order of ``columns``.

    ``data_row`` is 1-based and counts data rows (not the header); ``line`` is the file line the row ends on.

    Raises:
        CaptionFileError: empty file, a missing column, a row with the wrong number of fields, bad CSV.
    """
    rows: list[tuple[int, int, list[str]]] = []
    reader = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise CaptionFileError(path, f"is empty; expected {CSV_LAYOUT}")
            for column in columns:
                if column not in header:
                    hint = f" (is delimiter={delimiter!r} right?)" if len(header) == 1 else ""
                    raise CaptionFileError(path, f"has no column '{column}'; columns present: {header}{hint}")
            index = [header.index(c) for c in columns]
            for fields in reader:
                if not any(v.strip() for v in fields):
                    continue
                if len(fields) != len(header):
                    raise CaptionFileError(
                        path,
                        f"data row {len(rows) + 1} (line {reader.line_num}) has {len(fields)} fields but the "
                        f"header has {len(header)} (delimiter={delimiter!r}; quote fields that contain it)",
                    )
                rows.append((len(rows) + 1, reader.line_num, [fields[i] for i in index]))
    except csv.Error as err:
        line = reader.line_num if reader is not None else 0
        raise CaptionFileError(path, f"is not valid CSV (line {line}): {err}") from err
    except UnicodeDecodeError as err:
        raise CaptionFileError(path, f"is not UTF-8 text: {err}") from err
    if not rows:
        raise CaptionFileError(path, "has a header but no data rows")
    return rows


class CaptionCSV(_CaptionFiles):
    """(image, caption) pairs listed in a CSV file; rows naming the same image share its ``image_id``.

    Args:
        path: the CSV file (UTF-8, with a header row).
        image_root: folder that relative image paths are resolved against (default: the CSV's folder).
        image_column, caption_column: header names of the image path and caption columns.
        image_size: images are resized (squashed) to ``image_size`` x ``image_size``.
        delimiter: field separator (``","``; ``"\\t"`` for TSV).

    Items: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``caption`` str; ``image_id`` int64 scalar.

    Raises:
        DatasetNotFoundError: the CSV (or the given ``image_root``) is missing.
        CaptionFileError: malformed CSV, a missing column, an empty caption or image path, a missing image.
    """

    def __init__(
        self,
        path: str | Path,
        image_root: str | Path | None = None,
        image_column: str = "image",
        caption_column: str = "caption",
        image_size: int = 224,
        delimiter: str = ",",
    ) -> None:
        super().__init__(image_size)
        self.path = Path(path)
        _check_file("CaptionCSV", self.path, CSV_LAYOUT)
        self.image_root = self.path.parent if image_root is None else Path(image_root)
        if image_root is not None:
            _check_root("CaptionCSV", self.image_root, self.path)
        columns = (image_column, caption_column)
        for row, line, (image, caption) in read_caption_csv(self.path, columns, delimiter):
            image, caption, where = image.strip(), caption.strip(), f"data row {row} (line {line})"
            checks = ((caption, caption_column, "caption"), (image, image_column, "image path"))
            for value, column, what in checks:
                if not value:
                    raise CaptionFileError(self.path, f"{where} has an empty {what} in column '{column}'")
            resolved = self.image_root / image
            if not resolved.is_file():
                base = "" if Path(image).is_absolute() else f", relative to image_root '{self.image_root}'"
                raise CaptionFileError(
                    self.path, f"{where}: no image file at '{resolved}' ({image_column} '{image}'{base})"
                )
            self._add(resolved, caption)


def _load_karpathy(path: Path) -> list[Any]:
    """The ``images`` list of a Karpathy-split JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise CaptionFileError(path, f"is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise CaptionFileError(path, f"is not UTF-8 text: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        found = f"keys {sorted(data)}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise CaptionFileError(path, f"has {found}; expected {KARPATHY_LAYOUT}")
    return data["images"]


def _karpathy_entry(path: Path, i: int, entry: Any) -> tuple[str, str, str, list[str]]:
    """``(filepath, filename, split, captions)`` of ``images[i]``, validated."""
    if not isinstance(entry, dict):
        raise CaptionFileError(path, f"images[{i}] is a {type(entry).__name__}; expected an object")
    filename, filepath = entry.get("filename"), entry.get("filepath") or ""
    if not isinstance(filename, str) or not filename.strip():
        raise CaptionFileError(path, f"images[{i}] has no 'filename' string (keys present: {sorted(entry)})")
    where = f"images[{i}] ('{filename}')"
    if not isinstance(filepath, str):
        raise CaptionFileError(path, f"{where} has a non-string 'filepath': {filepath!r}")
    split = entry.get("split")
    if split not in KARPATHY_SPLITS:
        raise CaptionFileError(path, f"{where} has split {split!r}; expected one of {list(KARPATHY_SPLITS)}")
    sentences = entry.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise CaptionFileError(path, f"{where} has no 'sentences'; expected a list of {{\"raw\": <caption>}}")
    captions = []
    for j, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str):
            raise CaptionFileError(path, f"{where} sentences[{j}] has no 'raw' caption string")
        if not raw.strip():
            raise CaptionFileError(path, f"{where} sentences[{j}] has an empty caption")
        captions.append(raw.strip())
    return filepath, filename, split, captions


class KarpathyCaptions(_CaptionFiles):
    """One split of a Karpathy-split caption JSON (COCO, Flickr8k/30k); one item per (image, caption).

    Every entry of the file is checked for structure; the image files of the selected split must exist.

    Args:
        path: the JSON file (e.g. ``dataset_coco.json``).
        image_root: folder holding the images, at ``<image_root>/<filepath>/<filename>``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        include_restval: whether ``"train"`` includes the ``"restval"`` images.
        image_size: images are resized (squashed) to ``image_size`` x ``image_size``.
        max_captions_per_image: keep at most this many captions of each image (``None``: all).

    Items: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``caption`` str; ``image_id`` int64 scalar.

    Raises:
        DatasetNotFoundError: the JSON file or ``image_root`` is missing.
        CaptionFileError: malformed JSON, a bad entry, an empty caption, a missing image, an empty split.
    """

    def __init__(
        self,
        path: str | Path,
        image_root: str | Path,
        split: str = "train",
        include_restval: bool = True,
        image_size: int = 224,
        max_captions_per_image: int | None = None,
    ) -> None:
        super().__init__(image_size)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if max_captions_per_image is not None and max_captions_per_image < 1:
            raise ValueError(f"max_captions_per_image must be None or >= 1, got {max_captions_per_image}")
        self.path, self.image_root, self.split = Path(path), Path(image_root), split
        _check_file("KarpathyCaptions", self.path, KARPATHY_LAYOUT)
        entries = [_karpathy_entry(self.path, i, e) for i, e in enumerate(_load_karpathy(self.path))]
        _check_root("KarpathyCaptions", self.image_root, self.path)
        wanted = {"train", "restval"} if split == "train" and include_restval else {split}
        for i, (filepath, filename, entry_split, captions) in enumerate(entries):
            if entry_split not in wanted:
                continue
            image = self.image_root / filepath / filename
            if not image.is_file():
                raise CaptionFileError(self.path, f"images[{i}] ('{filename}'): no image file at '{image}'")
            for caption in captions[:max_captions_per_image]:
                self._add(image, caption)
        if not self.captions:
            present = sorted({e[2] for e in entries})
            raise CaptionFileError(
                self.path, f"has no images with split in {sorted(wanted)}; splits present: {present}"
            )
