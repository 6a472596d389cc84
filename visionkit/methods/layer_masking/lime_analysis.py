"""LIME masking analysis: LIME image explanations made with several fills on one perturbation matrix.

``lime`` is imported lazily (only when an explainer is built). The explainer subclass draws
LIME's perturbation matrix exactly as ``lime_image.LimeImageExplainer.data_labels`` does, so the
same ``random_state`` seed gives the same matrix for every fill (a paired comparison), and it
passes the real keep masks to the classifier: layer masking receives the mask, the painting fills
paint the image themselves. Segment ids are relabelled to ``0..n-1``, as LIME assumes.

Images here are ``(H, W, 3)`` float arrays in [0, 1] (LIME's convention); masks ``(H, W)``.
The run around it (model source, images, output folder) is :mod:`.lime_run`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from visionkit.methods.layer_masking.convert import is_layer_masked
from visionkit.methods.layer_masking.layers import LayerMaskingError
from visionkit.methods.layer_masking.protocols import check_fills, predict

__all__ = [
    "LimeSettings",
    "MaskedClassifier",
    "ablation_correct",
    "analyse",
    "coverage",
    "explain",
    "explainer_class",
    "jaccard",
    "object_segment_count",
    "relabel_segments",
    "segment_image",
    "summarise",
    "top_segments",
]


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------
def relabel_segments(segments: np.ndarray) -> np.ndarray:
    """Map arbitrary segment ids to ``0..n-1`` (in order of first id); ``(H, W)`` int64."""
    _, inverse = np.unique(segments, return_inverse=True)
    return inverse.reshape(segments.shape).astype(np.int64)


def segment_image(
    image: np.ndarray, method: str = "slic", n_segments: int = 40, compactness: float = 10.0, grid: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Superpixels of an ``(H, W, 3)`` image in [0, 1], relabelled to ``0..n-1``.

    Args:
        method: ``slic`` (skimage SLIC), ``quickshift`` (LIME's default segmenter) or ``grid``
            (square cells of ``grid`` px).
        n_segments, compactness: SLIC arguments.
        grid: cell side in px for ``grid``.
        seed: quickshift's random seed.
    """
    h, w = image.shape[:2]
    if method == "grid":
        if grid < 1:
            raise ValueError(f"grid must be a cell side of at least 1 px, got {grid}")
        rows, cols = np.arange(h) // grid, np.arange(w) // grid
        seg = rows[:, None] * (cols.max() + 1) + cols[None, :]
    elif method == "slic":
        from skimage.segmentation import slic

        seg = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    elif method == "quickshift":
        from skimage.segmentation import quickshift

        seg = quickshift(image, kernel_size=2, max_dist=200, ratio=0.2, rng=seed)
    else:
        raise ValueError(f"segmentation must be 'slic', 'quickshift' or 'grid', got '{method}'")
    return relabel_segments(np.asarray(seg))


# --------------------------------------------------------------------------------------------
# Classifier and explainer
# --------------------------------------------------------------------------------------------
class MaskedClassifier:
    """LIME ``classifier_fn`` that removes hidden pixels with one fill; returns softmax probabilities.

    Call it as ``fn(images, keep)`` (the explainer subclass: ``keep`` ``(b, H, W)`` bool, 1 =
    visible) or as ``fn(images)`` with NaN at hidden pixels (stock LIME with ``hide_color=np.nan``
    on a float image: the sentinel route). Images are ``(b, H, W, 3)``, uint8 or float in [0, 1].

    Args:
        model: the classifier; converted (``layer_masking.convert``) for ``layer*`` fills.
        fill: see :data:`~visionkit.methods.layer_masking.protocols.FILL_NAMES`.
        normalize: applied to [0, 1] images before the model (e.g. ImageNet mean/std).
        device: where the model runs.
        blur_sigma: sigma in px of the ``blur`` fill.
        max_batch: largest batch sent to the model at once.
    """

    def __init__(
        self, model: nn.Module, fill: str, normalize: Callable[[Tensor], Tensor] | None = None,
        device: str | torch.device = "cpu", blur_sigma: float = 2.0, max_batch: int = 512,
    ) -> None:
        check_fills([fill])
        if fill.startswith("layer") and not is_layer_masked(model):
            raise ValueError(f"fill '{fill}' needs a converted model (layer_masking.convert)")
        self.model, self.fill, self.normalize = model, fill, normalize
        self.device, self.blur_sigma, self.max_batch = torch.device(device), blur_sigma, max_batch
        self.calls = 0

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """``(b, H, W, 3)`` images (+ ``(b, H, W)`` keep masks) -> ``(b, K)`` probabilities."""
        self.calls += 1
        self.model.eval()
        x = torch.as_tensor(np.ascontiguousarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = x.permute(0, 3, 1, 2)
        if keep is None:  # sentinel route: NaN marks hidden pixels; zero them before any arithmetic
            hidden = torch.isnan(x).any(1, keepdim=True)
            x = torch.nan_to_num(x, nan=0.0)
            k = (~hidden).float()
        else:
            k = torch.as_tensor(np.asarray(keep, dtype=bool)).float().unsqueeze(1)
        out = []
        for start in range(0, x.shape[0], self.max_batch):
            xb = x[start:start + self.max_batch].to(self.device)
            kb = k[start:start + self.max_batch].to(self.device)
            out.append(predict(self.model, xb, kb, self.fill, self.normalize, self.blur_sigma).float().softmax(-1).cpu())
        return torch.cat(out).numpy().astype(np.float64)


_EXPLAINER: type | None = None


def explainer_class() -> type:
    """``MaskingLimeExplainer``: ``lime_image.LimeImageExplainer`` whose ``data_labels`` passes keep masks.

    The perturbation matrix is drawn as in stock LIME (``random_state.randint(0, 2, n*d)``, row
    0 all ones); rows become keep masks ``row[segments]`` and ``classifier_fn(images, keep)``
    is called on chunks of ``batch_size`` rows. Regression and explanation are stock LIME's.
    """
    global _EXPLAINER
    if _EXPLAINER is not None:
        return _EXPLAINER
    from lime.lime_image import LimeImageExplainer

    class MaskingLimeExplainer(LimeImageExplainer):
        """LIME image explainer that hands keep masks to ``classifier_fn(images, keep)``."""

        last_data: np.ndarray | None = None

        def data_labels(self, image: np.ndarray, fudged_image: np.ndarray, segments: np.ndarray,
                        classifier_fn: Callable[..., np.ndarray], num_samples: int, batch_size: int = 10,
                        **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
            """Stock LIME's perturbation matrix; ``classifier_fn(images, keep)`` per chunk of rows.

            Returns ``(data (num_samples, n_segments) in {0, 1}, probabilities (num_samples, K))``.
            """
            ids = np.unique(segments)
            n_features = ids.shape[0]
            if ids[0] != 0 or ids[-1] != n_features - 1:
                raise LayerMaskingError(
                    f"segment ids must be 0..n-1 (LIME indexes features by id); got {ids[0]}..{ids[-1]} "
                    f"for {n_features} segments: relabel with relabel_segments()"
                )
            data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
            data[0, :] = 1
            labels = []
            for start in range(0, num_samples, batch_size):
                rows = data[start:start + batch_size]
                keep = rows[:, segments].astype(bool)
                images = np.broadcast_to(image, (len(rows), *image.shape))
                labels.append(np.asarray(classifier_fn(images, keep)))
            self.last_data = data
            return data, np.concatenate(labels)

    _EXPLAINER = MaskingLimeExplainer
    return MaskingLimeExplainer


def explain(
    image: np.ndarray, segments: np.ndarray, classifier_fn: Callable[..., np.ndarray], label: int,
    num_samples: int = 500, batch_size: int = 250, seed: int = 0, kernel_width: float = 0.25,
) -> dict[str, Any]:
    """One LIME explanation of ``label`` with the keep-mask explainer.

    Returns:
        ``{"weights": (n,) array by segment id, "intercept", "score" (R^2 of the local fit),
        "data": (num_samples, n) perturbation matrix}``.
    """
    explainer = explainer_class()(kernel_width=kernel_width, random_state=seed)
    n = int(segments.max()) + 1
    exp = explainer.explain_instance(
        image, classifier_fn, labels=(label,), top_labels=None, hide_color=0, num_features=n,
        num_samples=num_samples, batch_size=batch_size, segmentation_fn=lambda _img: segments, random_seed=seed,
    )
    weights = np.zeros(n)
    for idx, w in exp.local_exp[label]:
        weights[idx] = w
    score = exp.score[label] if isinstance(exp.score, dict) else exp.score
    return {"weights": weights, "intercept": float(exp.intercept[label]), "score": float(score),
            "data": explainer.last_data}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def coverage(weights: np.ndarray, segments: np.ndarray, object_mask: np.ndarray) -> float:
    """Cosine between the weights and the object's share per segment, ``g_i = sum_{p in S_i} (O_p - mean O)``."""
    obj = (object_mask > 0).astype(np.float64)
    g = np.bincount(segments.ravel(), weights=(obj - obj.mean()).ravel(), minlength=len(weights))
    return float(weights @ g / (np.linalg.norm(weights) * np.linalg.norm(g) + 1e-8))


def top_segments(weights: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` segments with the largest weights, largest first (stable on ties)."""
    return np.argsort(-weights, kind="stable")[:k]


def jaccard(segments: np.ndarray, ids: Sequence[int], object_mask: np.ndarray) -> float:
    """Jaccard index of the union of segments ``ids`` and the object mask."""
    union_seg = np.isin(segments, np.asarray(ids))
    obj = object_mask > 0
    union = np.logical_or(union_seg, obj).sum()
    return float(np.logical_and(union_seg, obj).sum() / union) if union else 0.0


def object_segment_count(segments: np.ndarray, object_mask: np.ndarray) -> int:
    """Segments at least half covered by the object (at least 1): the ``k`` of the top-k metrics."""
    n = int(segments.max()) + 1
    obj = np.bincount(segments.ravel(), weights=(object_mask > 0).ravel().astype(np.float64), minlength=n)
    size = np.bincount(segments.ravel(), minlength=n)
    return max(1, int((obj >= 0.5 * size).sum()))


@torch.inference_mode()
def ablation_correct(
    model: nn.Module, image: np.ndarray, segments: np.ndarray, ids: Sequence[int], label: int, fill: str = "grey",
    normalize: Callable[[Tensor], Tensor] | None = None, device: str | torch.device = "cpu",
) -> bool:
    """Is ``label`` still predicted once segments ``ids`` are removed with ``fill``? (lower = more faithful)."""
    x = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None].to(device)
    keep = torch.as_tensor(~np.isin(segments, np.asarray(ids)), dtype=torch.float32)[None, None].to(device)
    return int(predict(model, x, keep, fill, normalize).argmax(-1)) == int(label)


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
@dataclass
class LimeSettings:
    """Settings of :func:`analyse` (all fills share ``seed`` and therefore one perturbation matrix)."""

    fills: list[str] = field(default_factory=lambda: ["layer", "grey", "black", "blur"])
    num_samples: int = 500
    batch_size: int = 250
    segmentation: str = "slic"
    n_segments: int = 40
    compactness: float = 10.0
    grid: int = 4
    top_k: int = 5
    seed: int = 0
    blur_sigma: float = 2.0
    kernel_width: float = 0.25

    def __post_init__(self) -> None:
        self.fills = check_fills(self.fills)
        lowest = {"num_samples": 2, "batch_size": 1, "top_k": 1, "n_segments": 2, "grid": 1}
        for name, low in lowest.items():
            if getattr(self, name) < low:
                raise ValueError(f"LimeSettings.{name} must be at least {low}, got {getattr(self, name)}")
        if self.segmentation not in ("slic", "quickshift", "grid"):
            raise ValueError(f"segmentation must be 'slic', 'quickshift' or 'grid', got '{self.segmentation}'")
        if not (math.isfinite(self.compactness) and self.compactness > 0):
            raise ValueError(f"LimeSettings.compactness must be a finite number > 0, got {self.compactness}")
        if not (math.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"LimeSettings.blur_sigma must be a finite number >= 0, got {self.blur_sigma}")
        if not (math.isfinite(self.kernel_width) and self.kernel_width > 0):
            raise ValueError(f"LimeSettings.kernel_width must be a finite number > 0, got {self.kernel_width}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"LimeSettings.seed must be in 0..2**32-1 (numpy's seed range), got {self.seed}")


def analyse(
    model: nn.Module, items: Sequence[dict[str, Any]], settings: LimeSettings,
    normalize: Callable[[Tensor], Tensor] | None = None, device: str | torch.device = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Explain every item with every fill and measure the explanations.

    Args:
        model: a converted classifier (its plain forward is the original model).
        items: dicts with ``name``, ``image`` ``(H, W, 3)`` float in [0, 1], optional ``label``
            (int) and ``mask`` (``(H, W)`` object mask).
        settings: see :class:`LimeSettings`.
        progress: called with a short description after each (item, fill) explanation.

    Returns:
        One record per item: ``name, label, target, pred, n_segments, k, segments`` and
        ``fills: {fill: {weights, intercept, score, top, coverage, jaccard, ablation_grey,
        ablation_layer, seconds}}`` (object metrics are None without a mask).
    """
    model.eval()
    records = []
    for item in items:
        image = np.asarray(item["image"], dtype=np.float64)
        segments = segment_image(image, settings.segmentation, settings.n_segments, settings.compactness,
                                 settings.grid, settings.seed)
        mask = item.get("mask")
        with torch.inference_mode():
            x = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None].to(device)
            probs = model((normalize or (lambda t: t))(x)).float().softmax(-1)[0].cpu()
        pred = int(probs.argmax())
        label = item.get("label")
        target = int(label) if label is not None else pred
        k = object_segment_count(segments, mask) if mask is not None else settings.top_k
        rec: dict[str, Any] = {"name": item["name"], "label": None if label is None else int(label), "target": target,
                               "pred": pred, "target_prob": float(probs[target]), "n_segments": int(segments.max()) + 1,
                               "k": k, "segments": segments, "fills": {}}
        for fill in settings.fills:
            start = time.perf_counter()
            fn = MaskedClassifier(model, fill, normalize, device, settings.blur_sigma)
            res = explain(image, segments, fn, target, settings.num_samples, settings.batch_size, settings.seed,
                          settings.kernel_width)
            top = top_segments(res["weights"], k)
            rec["fills"][fill] = {
                "weights": res["weights"], "intercept": res["intercept"], "score": res["score"], "top": top,
                "coverage": coverage(res["weights"], segments, mask) if mask is not None else None,
                "jaccard": jaccard(segments, top, mask) if mask is not None else None,
                "ablation_grey": ablation_correct(model, image, segments, top, target, "grey", normalize, device),
                "ablation_layer": ablation_correct(model, image, segments, top, target, "layer", normalize, device)
                if is_layer_masked(model) else None,
                "seconds": time.perf_counter() - start,
                "calls": fn.calls,
            }
            if progress:
                progress(f"{item['name']}:{fill}")
        records.append(rec)
    return records


def summarise(records: Sequence[dict[str, Any]], fills: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per fill: mean coverage and Jaccard (images with masks), win % (highest coverage, ties
    share the win), top-k ablation accuracy with grey on the plain model and with layer masking,
    mean R^2 of LIME's local fit, and seconds per explanation."""
    out: dict[str, dict[str, Any]] = {}
    wins = dict.fromkeys(fills, 0.0)
    judged = 0
    for rec in records:
        covs = {f: rec["fills"][f]["coverage"] for f in fills}
        if any(c is None for c in covs.values()):
            continue
        judged += 1
        best = max(covs.values())
        winners = [f for f, c in covs.items() if math.isclose(c, best, rel_tol=0, abs_tol=1e-12)]
        for f in winners:
            wins[f] += 1.0 / len(winners)

    def mean(values: list[Any]) -> float | None:
        vals = [float(v) for v in values if v is not None]
        return float(np.mean(vals)) if vals else None

    for f in fills:
        rows = [rec["fills"][f] for rec in records]
        out[f] = {
            "coverage": mean([r["coverage"] for r in rows]),
            "coverage_sd": float(np.std([r["coverage"] for r in rows if r["coverage"] is not None]))
            if judged else None,
            "jaccard": mean([r["jaccard"] for r in rows]),
            "win_pct": 100.0 * wins[f] / judged if judged else None,
            "ablation_acc_grey": mean([r["ablation_grey"] for r in rows]),
            "ablation_acc_layer": mean([r["ablation_layer"] for r in rows]),
            "r2": mean([r["score"] for r in rows]),
            "seconds": mean([r["seconds"] for r in rows]),
            "images": len(rows),
        }
    return out


def render_panel(record: dict[str, Any], image: np.ndarray, mask: np.ndarray | None, class_names: Sequence[str] | None,
                 min_size: int = 128) -> Tensor:
    """One row of tiles: the input (object outline in green when known), then per fill its top-k
    segments at full brightness over a dimmed image, with segment borders in yellow.

    Returns:
        ``(1 + F, 3, S, S)`` float images in [0, 1], captioned.
    """
    from skimage.segmentation import find_boundaries

    from visionkit.utils.viz import annotate

    segments = record["segments"]
    scale = max(1, -(-min_size // image.shape[0]))
    big = np.kron(image, np.ones((scale, scale, 1)))
    seg_big = np.kron(segments, np.ones((scale, scale), dtype=np.int64))
    borders = find_boundaries(seg_big, mode="inner")
    tiles, captions = [], []
    first = big.copy()
    if mask is not None:
        outline = find_boundaries(np.kron((mask > 0).astype(np.int64), np.ones((scale, scale), dtype=np.int64)), mode="inner")
        first[outline] = (0.1, 0.9, 0.2)
    tiles.append(first)
    name = class_names[record["target"]] if class_names and record["target"] < len(class_names) else str(record["target"])
    captions.append(f"{record['name']}: {name}")
    for fill, res in record["fills"].items():
        chosen = np.isin(seg_big, res["top"])
        tile = np.where(chosen[..., None], big, 0.25 * big + 0.1)
        tile[borders] = 0.55 * tile[borders] + 0.45 * np.array([1.0, 0.85, 0.0])
        tiles.append(tile)
        cov = res["coverage"]
        captions.append(f"{fill}" + (f" cov {cov:.2f}" if cov is not None else ""))
    stack = torch.as_tensor(np.stack(tiles), dtype=torch.float32).permute(0, 3, 1, 2).clamp(0, 1)
    return annotate(stack, captions, min_size=min_size)
