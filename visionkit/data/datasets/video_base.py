"""``VideoDataset``: the base of clip and temporal-localization datasets, with a frame-strip ``plot``.

Sample conventions (every video dataset):

* ``video`` float32 ``(T, C, H, W)`` in [0, 1]; ``index`` int64 (position in the dataset);
* classification clips: ``label`` int64;
* localization samples: ``segments`` float32 ``(K, 2)`` (start, end) in seconds from the sample's first
  frame, ``segment_labels`` int64 ``(K,)``, ``fps`` float (frames per second of ``video``; for feature
  sequences, feature steps per second), ``duration`` float (seconds the sample covers), ``clip_start``
  float (seconds from the source video's start to the sample's first frame); K varies, so batches keep
  these as lists (:func:`~visionkit.data.collate.collate_samples`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.data.datasets.base import VisionDataset

#: Frames drawn by :meth:`VideoDataset.plot`.
STRIP_FRAMES = 8


def sample_generator(seed: int, index: int, epoch: int | None) -> torch.Generator | None:
    """The generator of one sample's random draws: a pure function of ``(seed, index, epoch)``;
    ``None`` when ``epoch`` is ``None`` (evaluation: no randomness)."""
    if epoch is None:
        return None
    state = np.random.SeedSequence([seed % 2**63, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) % 2**63)


class VideoDataset(VisionDataset):
    """Base of video datasets: items follow the conventions of this module's docstring."""

    def plot(self, sample: dict[str, Any], prediction: Any = None):
        """A strip of up to 8 evenly spaced frames, titled with the label; for localization samples a
        timeline of ``segments`` below it (and of predicted segments when ``prediction`` is a dict with
        ``segments``, ``labels``). Returns a matplotlib Figure."""
        from visionkit.utils.viz import pyplot, to_rgb

        plt = pyplot()
        video = sample["video"]
        picks = torch.linspace(0, len(video) - 1, min(STRIP_FRAMES, len(video))).round().long()
        timeline = "segments" in sample
        fig, axes = plt.subplots(
            2 if timeline else 1, len(picks), figsize=(1.6 * len(picks), 2.2 + 1.2 * timeline), squeeze=False,
            gridspec_kw={"height_ratios": [3, 1] if timeline else [1]},
        )
        fps = float(sample.get("fps", 0) or 0)
        for ax, t in zip(axes[0], picks.tolist(), strict=True):
            ax.imshow(to_rgb(video[t][None])[0].permute(1, 2, 0).numpy())
            ax.set_title(f"t={t / fps:.2f}s" if fps else f"frame {t}", fontsize=8)
            ax.axis("off")
        title = self._title(sample, prediction)
        if title:
            fig.suptitle(title, fontsize=9)
        if timeline:
            gs = axes[1, 0].get_gridspec()
            for ax in axes[1]:
                ax.remove()
            ax = fig.add_subplot(gs[1, :])
            duration = float(sample.get("duration", len(video) / fps if fps else len(video)))
            self._draw_segments(ax, sample["segments"], sample["segment_labels"], 0.55, "truth")
            if isinstance(prediction, dict) and "segments" in prediction:
                self._draw_segments(ax, prediction["segments"], prediction["labels"], 0.05, "predicted")
            ax.set_xlim(0, duration)
            ax.set_ylim(0, 1)
            ax.set_yticks([0.25, 0.75], ["predicted", "truth"] if isinstance(prediction, dict) else ["", "truth"])
            ax.set_xlabel("seconds")
        fig.tight_layout()
        return fig

    def _title(self, sample: dict[str, Any], prediction: Any) -> str:
        label = sample.get("label")
        title = self.classes[int(label)] if label is not None else ""
        if prediction is not None and not isinstance(prediction, dict):
            title += f"  pred: {self.classes[int(prediction)]}"
        return title

    def _draw_segments(self, ax: Any, segments: Tensor, labels: Tensor, y: float, kind: str) -> None:
        import matplotlib

        colours = matplotlib.colormaps["tab10"].colors
        for (start, end), label in zip(torch.as_tensor(segments).tolist(), torch.as_tensor(labels).tolist(), strict=True):
            ax.broken_barh([(start, end - start)], (y, 0.4), color=colours[int(label) % 10], alpha=0.8)
            ax.text(start, y + 0.2, self.classes[int(label)], fontsize=7, va="center")
