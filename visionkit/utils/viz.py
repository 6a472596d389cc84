"""Tensor-image helpers for the PNG panels (everything in ``(B, 3, H, W)``, values in [0, 1])."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

GREEN = (0.1, 0.75, 0.2)
RED = (0.9, 0.15, 0.1)


def to_rgb(images: Tensor) -> Tensor:
    """``(B, C, H, W)`` with C in {1, 3, more} -> ``(B, 3, H, W)`` float in [0, 1]."""
    images = images.detach().float().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images[:, :3].clamp(0, 1)


def annotate(
    images: Tensor, captions: Sequence[str], ok: Tensor | None = None, min_size: int = 96, border: int = 3
) -> Tensor:
    """Upscale images to at least ``min_size`` px, frame them green (ok) or red, and write a caption.

    Returns:
        ``(B, 3, H', W')`` float tensor in [0, 1].
    """
    images = to_rgb(images)
    scale = max(1, -(-min_size // images.shape[-1]))
    images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    out = []
    for i, img in enumerate(images):
        if ok is not None:
            colour = torch.tensor(GREEN if bool(ok[i]) else RED).view(3, 1, 1)
            img = img.clone()
            img[:, :border, :] = colour
            img[:, -border:, :] = colour
            img[:, :, :border] = colour
            img[:, :, -border:] = colour
        pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        draw.rectangle((border, border, border + 7 * len(captions[i]) + 4, border + 13), fill=(0, 0, 0))
        draw.text((border + 2, border + 1), captions[i], fill=(255, 255, 255))
        out.append(torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def overlay(images: Tensor, heat: Tensor, alpha: float = 0.5) -> Tensor:
    """Blend a ``(B, H, W)`` map in [0, 1] over images as a red-yellow heat overlay."""
    images = to_rgb(images)
    heat = heat.detach().float().cpu().clamp(0, 1).unsqueeze(1)
    colour = torch.cat([torch.ones_like(heat), heat, torch.zeros_like(heat)], 1)
    return (1 - alpha * heat) * images + alpha * heat * colour


def mask_colours(mask: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``(B, H, W)`` integer class mask -> ``(B, 3, H, W)`` colours (class 0 black, ignore grey)."""
    import matplotlib

    palette = torch.tensor(matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["tab20b"].colors)
    palette = torch.cat([torch.zeros(1, 3), palette.float()])
    idx = mask.long().clamp(0, len(palette) - 1)
    out = palette[idx].permute(0, 3, 1, 2)
    out[(mask == ignore_index).unsqueeze(1).expand_as(out)] = 0.5
    return out


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported on first use (never at import time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib Figure as an image at ``path`` (parent folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def figure_to_tensor(fig) -> Tensor:
    """Render a matplotlib Figure to a ``(1, 3, H, W)`` float tensor in [0, 1] and close it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
