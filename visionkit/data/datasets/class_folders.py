"""The class-folder layout shared by image and video folders: ``root/<class_name>/<item>``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from visionkit.data.errors import DatasetNotFoundError


def scan_class_folders(
    root: str | Path, dataset: str, layout: str, list_items: Callable[[Path], list[Path]], what: str
) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names, hidden ones skipped) and ``(path, class_index)`` of every item
    that ``list_items(class_folder)`` returns.

    A class folder without items stays in the class list, so that label indices do not depend on which
    folders hold files, and a warning names it.

    Args:
        root: the dataset folder.
        dataset: dataset name for messages (``"ImageFolder"``).
        layout: the expected layout, in one line, for messages.
        list_items: the items of one class folder.
        what: what the items are, for messages (``"images (extensions ...)"``).

    Raises:
        DatasetNotFoundError: ``root`` is missing, has no class folders, or holds no items.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(dataset, root, layout, "is not a folder" if root.exists() else "does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(dataset, root, layout, "has no class sub-folders")
    items: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        found = list_items(root / name)
        if not found:
            warnings.warn(
                f"{dataset} class folder '{root / name}' holds no {what}; it stays class {c} so that label "
                "indices stay stable, but has no samples",
                stacklevel=3,
            )
        items += [(p, c) for p in found]
    if not items:
        raise DatasetNotFoundError(dataset, root, layout, f"holds no {what}")
    return classes, items


def align_classes(
    found: list[str], items: list[tuple[Path, int]], classes: list[str] | None, dataset: str, root: str | Path, layout: str
) -> tuple[list[str], list[tuple[Path, int]]]:
    """Relabel ``items`` scanned with class list ``found`` to ``classes`` (another split's list), so that
    splits agree on label indices; ``classes`` ``None`` keeps ``found``.

    Raises:
        DatasetNotFoundError: a class folder that ``classes`` lacks.
    """
    if classes is None or found == classes:
        return list(classes or found), items
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetNotFoundError(dataset, root, layout, f"has class folders {unknown} that the train split lacks")
    return list(classes), [(p, classes.index(found[c])) for p, c in items]
