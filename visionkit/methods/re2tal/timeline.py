"""Timeline images of temporal action localization (ground truth against detections), drawn with torch only.

One image per sample, ``px`` pixels per temporal step (by default about 256 pixels in all), top to bottom:

1. the per-step score: a bar as high as the largest class probability, in the colour of that class;
2. the ground truth: each segment in its class colour on a light grey band;
3. ``lanes`` lanes of detections, the best first: each detection in its class colour, faded towards white
   as its score falls (score 1: full colour, score 0: white).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["CLASS_COLOURS", "timeline_images"]

#: RGB in [0, 1] of class ``k % 10`` (matplotlib's tab10).
CLASS_COLOURS = torch.tensor([
    [0.12, 0.47, 0.71], [1.00, 0.50, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16], [0.58, 0.40, 0.74],
    [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.50, 0.50, 0.50], [0.74, 0.74, 0.13], [0.09, 0.75, 0.81],
])
SCORE_ROWS, BAND_ROWS, LANE_ROWS, GAP = 24, 12, 8, 3
#: Target width of a timeline in pixels when ``px`` is not given.
WIDTH = 256
BAND_GREY = 0.85


def _span(segment: Tensor, step_seconds: float, px: int, width: int) -> tuple[int, int]:
    """Pixel columns ``[a, b)`` of a ``(start, end)`` segment in seconds (at least one column)."""
    a = math.floor(float(segment[0]) / step_seconds * px)
    b = math.ceil(float(segment[1]) / step_seconds * px)
    a = min(max(a, 0), width - 1)
    return a, min(max(b, a + 1), width)


def timeline_images(
    probs: Tensor,
    step_seconds: Tensor,
    gt_segments: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    detections: Sequence[dict[str, Tensor]],
    px: int | None = None,
    lanes: int = 3,
) -> Tensor:
    """``(B, 3, H, L * px)`` float32 timelines in [0, 1] (layout in the module docstring).

    Args:
        probs: ``(B, L, K)`` per-step class probabilities.
        step_seconds: ``(B,)`` seconds per step (segments are in seconds).
        gt_segments, gt_labels: per sample, ``(K_i, 2)`` seconds and ``(K_i,)`` classes.
        detections: per sample, ``segments`` / ``scores`` / ``labels`` by decreasing score.
        px: pixels per step; ``None``: about :data:`WIDTH` pixels in all (2 to 16 per step).
        lanes: detections drawn per sample (the best ``lanes``).
    """
    batch, steps, _ = probs.shape
    px = px or max(2, min(16, WIDTH // max(steps, 1)))
    width = steps * px
    height = SCORE_ROWS + GAP + BAND_ROWS + GAP + lanes * (LANE_ROWS + 1)
    images = torch.ones(batch, 3, height, width)
    colours = CLASS_COLOURS
    probs = probs.detach().float().cpu()
    for b in range(batch):
        best, cls = probs[b].max(-1)
        for i in range(steps):
            bar = int(round(float(best[i]) * SCORE_ROWS))
            if bar:
                images[b, :, SCORE_ROWS - bar:SCORE_ROWS, i * px:(i + 1) * px] = colours[int(cls[i]) % 10][:, None, None]
        top = SCORE_ROWS + GAP
        images[b, :, top:top + BAND_ROWS] = BAND_GREY
        seconds = float(step_seconds[b])
        for segment, label in zip(gt_segments[b].cpu(), gt_labels[b].cpu(), strict=True):
            a, z = _span(segment, seconds, px, width)
            images[b, :, top:top + BAND_ROWS, a:z] = colours[int(label) % 10][:, None, None]
        top += BAND_ROWS + GAP
        det = detections[b]
        for lane, (segment, score, label) in enumerate(zip(det["segments"][:lanes].cpu(), det["scores"][:lanes].cpu(),
                                                           det["labels"][:lanes].cpu(), strict=True)):
            row = top + lane * (LANE_ROWS + 1)
            a, z = _span(segment, seconds, px, width)
            colour = 1 - float(score.clamp(0, 1)) * (1 - colours[int(label) % 10])
            images[b, :, row:row + LANE_ROWS, a:z] = colour[:, None, None]
    return images
