"""Masking protocols: fills, random patch removal curves and the mask-shape leakage test (pure torch).

Images are float ``(B, 3, H, W)`` in pixel space [0, 1]; keep masks ``(B, 1, H, W)`` with 1 =
visible. Every fill of one batch sees the same keep masks (a paired comparison). Writing the
results (CSV, PNG) is the evaluator's job: :mod:`.callbacks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.methods.layer_masking.convert import is_layer_masked, use_fill

__all__ = [
    "BASELINE_FILLS",
    "FILL_NAMES",
    "GREY",
    "LAYER_FILLS",
    "MaskingProtocols",
    "bbox_masks",
    "class_entropy",
    "paint",
    "patch_orders",
    "predict",
    "removal_keep",
]

#: ImageNet mean colour: the "greyout" fill (0 after ImageNet normalisation).
GREY = (0.485, 0.456, 0.406)
#: Layer-masking fills: name -> masked-convolution fill rule.
LAYER_FILLS = {"layer": "neighbor", "layer_zero": "zero", "layer_partial": "partial"}
#: Fills that paint the hidden pixels of the image.
BASELINE_FILLS = ("grey", "black", "mean", "blur")
FILL_NAMES = tuple(LAYER_FILLS) + BASELINE_FILLS


def check_fills(fills: Sequence[str]) -> list[str]:
    """Validate fill names; returns them as a list."""
    fills = list(fills)
    bad = [f for f in fills if f not in FILL_NAMES]
    if bad or not fills:
        raise ValueError(f"unknown fill(s) {bad or fills}; choose from {list(FILL_NAMES)}")
    return fills


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding, kernel radius ``ceil(3 sigma)``; ``(B, C, H, W)``."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def paint(images: Tensor, keep: Tensor, fill: str, blur_sigma: float = 2.0) -> Tensor:
    """Replace hidden pixels by a fill colour: ``grey`` (ImageNet mean), ``black``, ``mean`` (the
    image's mean colour) or ``blur`` (the Gaussian-blurred image, ``blur_sigma`` px).

    Returns:
        ``(B, 3, H, W)`` in pixel space.
    """
    if fill == "grey":
        colour = torch.tensor(GREY, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        if images.shape[1] != 3:
            colour = colour.mean(1, keepdim=True)
        background = colour.expand_as(images)
    elif fill == "black":
        background = torch.zeros_like(images)
    elif fill == "mean":
        background = images.mean((2, 3), keepdim=True).expand_as(images)
    elif fill == "blur":
        background = gaussian_blur(images, blur_sigma)
    else:
        raise ValueError(f"'{fill}' is not a painting fill; choose from {list(BASELINE_FILLS)}")
    return torch.where(keep > 0, images, background)


def predict(
    model: nn.Module,
    images: Tensor,
    keep: Tensor,
    fill: str,
    normalize: Callable[[Tensor], Tensor] | None = None,
    blur_sigma: float = 2.0,
) -> Tensor:
    """Logits of ``model`` on ``images`` with the hidden pixels removed by ``fill``.

    Layer-masking fills (``layer``, ``layer_zero``, ``layer_partial``) pass the real keep mask
    to the converted model; the others paint the image and run the plain forward.
    """
    norm = normalize or (lambda t: t)
    if fill in LAYER_FILLS:
        if not is_layer_masked(model):
            raise ValueError(f"fill '{fill}' needs a converted model (layer_masking.convert)")
        with use_fill(model, LAYER_FILLS[fill]):
            return model(norm(images), keep_mask=keep)
    return model(norm(paint(images, keep, fill, blur_sigma)))


def patch_orders(
    batch: int, height: int, width: int, patch: int, generator: torch.Generator,
    object_mask: Tensor | None = None, region: str = "any",
) -> tuple[Tensor, Tensor]:
    """A random removal order of the ``patch`` x ``patch`` cells of each image.

    Args:
        object_mask: ``(B, H, W)``, non-zero on the object; needed for ``region="background"``.
        region: ``"any"`` (every cell) or ``"background"`` (cells that do not touch the object,
            dilated by 1 px).

    Returns:
        ``rank`` ``(B, P)``: each cell's position in its image's order (ineligible cells last),
        and ``eligible`` ``(B,)``: the number of removable cells.
    """
    gh, gw = -(-height // patch), -(-width // patch)
    keys = torch.rand(batch, gh * gw, generator=generator)
    if region == "background":
        if object_mask is None:
            raise ValueError("region='background' needs object masks")
        obj = (object_mask > 0).float().unsqueeze(1)
        obj = F.max_pool2d(obj, 3, 1, 1)  # "touching" includes the 1-px ring around the object
        obj = F.pad(obj, (0, gw * patch - width, 0, gh * patch - height))
        touched = F.max_pool2d(obj, patch, patch).flatten(1) > 0
        keys = keys.masked_fill(touched.cpu(), float("inf"))
    elif region != "any":
        raise ValueError(f"region must be 'any' or 'background', got '{region}'")
    order = keys.argsort(1)
    rank = order.argsort(1)
    eligible = torch.isfinite(keys).sum(1)
    return rank, eligible


def removal_keep(rank: Tensor, eligible: Tensor, fraction: float, height: int, width: int, patch: int) -> Tensor:
    """Keep mask hiding the first ``round(fraction * eligible)`` cells of each order: ``(B, 1, H, W)``.

    Masks are nested: a cell hidden at one fraction stays hidden at every larger one.
    """
    gh, gw = -(-height // patch), -(-width // patch)
    count = torch.round(eligible.float() * fraction).long()
    hidden = rank < count[:, None]
    keep = (~hidden).float().view(-1, 1, gh, gw)
    keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return keep[:, :, :height, :width].contiguous()


def bbox_masks(object_mask: Tensor) -> Tensor:
    """The bounding box of each object mask: ``(B, H, W)`` bool (empty where the mask is empty)."""
    obj = object_mask > 0
    rows, cols = obj.any(2), obj.any(1)
    h, w = obj.shape[-2:]
    ar_h = torch.arange(h, device=obj.device)
    ar_w = torch.arange(w, device=obj.device)
    big = torch.tensor(10**6, device=obj.device)
    top = torch.where(rows, ar_h, big).amin(1)
    bottom = torch.where(rows, ar_h, -big).amax(1)
    left = torch.where(cols, ar_w, big).amin(1)
    right = torch.where(cols, ar_w, -big).amax(1)
    in_rows = (ar_h[None] >= top[:, None]) & (ar_h[None] <= bottom[:, None])
    in_cols = (ar_w[None] >= left[:, None]) & (ar_w[None] <= right[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


def class_entropy(histogram: Tensor) -> Tensor:
    """Entropy (nats) of the predicted-class histogram(s) over the last dim; 0 for an empty histogram."""
    total = histogram.sum(-1, keepdim=True).clamp(min=1)
    p = histogram / total
    return -(p * torch.log(p.clamp(min=1e-12))).sum(-1)


class MaskingProtocols(nn.Module):
    """Accumulates the removal curves and the leakage test over a dataset (state is summable across ranks).

    Args:
        fills: fills to compare (see :data:`FILL_NAMES`).
        fractions: removed fractions of the eligible patches, in [0, 1].
        num_classes: classes of the model.
        patch: removal cell side in pixels.
        region: ``"auto"`` (background cells when object masks exist, else any), ``"any"`` or ``"background"``.
        seed: seed of the removal orders (with the batch index).
        blur_sigma: sigma in px of the ``blur`` fill.
        leakage: run the mask-shape leakage test on batches with object masks.
    """

    def __init__(
        self, fills: Sequence[str], fractions: Sequence[float], num_classes: int, patch: int = 4,
        region: str = "auto", seed: int = 0, blur_sigma: float = 2.0, leakage: bool = True,
    ) -> None:
        super().__init__()
        self.fills = check_fills(fills)
        self.fractions = [float(f) for f in fractions]
        if not self.fractions or any(not 0.0 <= f <= 1.0 for f in self.fractions):
            raise ValueError(f"removal fractions must be in [0, 1], got {list(fractions)}")
        if patch < 1:
            raise ValueError(f"patch size must be positive, got {patch}")
        if region not in ("auto", "any", "background"):
            raise ValueError(f"region must be 'auto', 'any' or 'background', got '{region}'")
        self.num_classes, self.patch, self.region, self.seed = num_classes, patch, region, seed
        self.blur_sigma, self.leakage = blur_sigma, leakage
        nf, nr = len(self.fills), len(self.fractions)
        for name, shape in (("correct", (nf, nr)), ("unchanged", (nf, nr)), ("hist", (nf, nr, num_classes)),
                            ("seen", ()), ("leak_exact", (nf,)), ("leak_bbox", (nf,)), ("leak_seen", ()),
                            ("regions", (2,))):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64), persistent=False)

    def reset(self) -> None:
        """Zero every counter."""
        for buf in self.buffers():
            buf.zero_()

    @torch.no_grad()
    def update(
        self, model: nn.Module, images: Tensor, labels: Tensor, object_mask: Tensor | None, batch_idx: int,
        normalize: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Run every fill on one batch at every fraction (and the leakage test) and count outcomes."""
        b, _, h, w = images.shape
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_idx)
        region = self.region
        if region == "auto":
            region = "background" if object_mask is not None else "any"
        rank, eligible = patch_orders(b, h, w, self.patch, gen, object_mask.cpu() if object_mask is not None else None, region)
        rank, eligible = rank.to(images.device), eligible.to(images.device)
        self.regions[int(region == "background")] += b
        clean = model(normalize(images) if normalize else images).argmax(-1)
        for r, frac in enumerate(self.fractions):
            keep = removal_keep(rank, eligible, frac, h, w, self.patch)
            for f, fill in enumerate(self.fills):
                pred = predict(model, images, keep, fill, normalize, self.blur_sigma).argmax(-1)
                self.correct[f, r] += (pred == labels).sum()
                self.unchanged[f, r] += (pred == clean).sum()
                self.hist[f, r] += torch.bincount(pred, minlength=self.num_classes)[: self.num_classes].to(self.hist)
        self.seen += b
        if not self.leakage or object_mask is None:
            return
        ok = (clean == labels) & (object_mask.flatten(1) > 0).any(1)
        if not bool(ok.any()):
            return
        imgs, labs, obj = images[ok], labels[ok], object_mask[ok]
        exact = (obj == 0).float().unsqueeze(1)
        box = (~bbox_masks(obj)).float().unsqueeze(1)
        for f, fill in enumerate(self.fills):
            self.leak_exact[f] += (predict(model, imgs, exact, fill, normalize, self.blur_sigma).argmax(-1) == labs).sum()
            self.leak_bbox[f] += (predict(model, imgs, box, fill, normalize, self.blur_sigma).argmax(-1) == labs).sum()
        self.leak_seen += int(ok.sum())

    def compute(self) -> dict[str, Any]:
        """Curves and leakage as plain Python numbers.

        Returns:
            ``{"removal": [row, ...], "leakage": [row, ...], "region": str}``; a removal row has
            ``fill, fraction, accuracy, entropy, unchanged, n``; a leakage row ``fill,
            exact_hole_acc, bbox_hole_acc, leak, n`` (accuracy on images correct when clean).
        """
        n = max(float(self.seen), 1.0)
        entropy = class_entropy(self.hist)
        removal = [
            {"fill": fill, "fraction": frac, "accuracy": float(self.correct[f, r]) / n,
             "entropy": float(entropy[f, r]), "unchanged": float(self.unchanged[f, r]) / n, "n": int(self.seen)}
            for f, fill in enumerate(self.fills) for r, frac in enumerate(self.fractions)
        ]
        leakage = []
        if float(self.leak_seen) > 0:
            m = float(self.leak_seen)
            for f, fill in enumerate(self.fills):
                exact, box = float(self.leak_exact[f]) / m, float(self.leak_bbox[f]) / m
                leakage.append({"fill": fill, "exact_hole_acc": exact, "bbox_hole_acc": box, "leak": exact - box,
                                "n": int(m)})
        any_n, bg_n = (float(v) for v in self.regions)
        region = "background" if bg_n and not any_n else "any" if any_n and not bg_n else "mixed" if any_n else "none"
        return {"removal": removal, "leakage": leakage, "region": region}
