"""``VisionDataset``: the map-style dataset base with a ``plot`` for one sample."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils.data import Dataset


class VisionDataset(Dataset):
    """Base of visionkit datasets. Items are dicts; subclasses set ``classes`` and ``in_channels``."""

    classes: list[str]
    in_channels: int = 3

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def plot(self, sample: dict[str, Any], prediction: Tensor | int | None = None):
        """Draw ``sample`` (image, label, mask if present) as a matplotlib Figure."""
        import matplotlib.pyplot as plt

        from visionkit.utils.viz import mask_colours, to_rgb

        panels = 2 if "mask" in sample else 1
        fig, axes = plt.subplots(1, panels, figsize=(3 * panels, 3), squeeze=False)
        axes[0, 0].imshow(to_rgb(sample["image"][None])[0].permute(1, 2, 0).numpy())
        label = sample.get("label")
        if label is not None and label.ndim == 0:
            title = self.classes[int(label)]
        elif label is not None:
            title = ", ".join(self.classes[i] for i in label.nonzero().flatten().tolist())
        else:
            title = ""
        if prediction is not None:
            title += f"\npred: {self.classes[int(prediction)]}"
        axes[0, 0].set_title(title)
        if "mask" in sample:
            axes[0, 1].imshow(mask_colours(sample["mask"][None], self.num_classes)[0].permute(1, 2, 0).numpy())
            axes[0, 1].set_title("mask")
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        return fig


class InMemoryCache(Dataset):
    """Keeps each item of a deterministic dataset after its first read (in this process).

    For generated datasets whose items cost more to draw than to keep (a few MB per thousand
    32 px images). Other attributes (``classes``, ``plot``, ``captions``, ...) are the dataset's.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if index not in self._items:
            self._items[index] = self.dataset[index]
        return self._items[index]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "_items"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
