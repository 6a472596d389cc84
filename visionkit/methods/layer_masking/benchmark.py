"""Timing layer masking against the plain model: forward pairs, LIME pairs, an operator profile.

Runs alternate (plain, masked, plain, masked, ...) so that load changes hit both arms alike;
times are wall-clock seconds (CUDA synchronised). ``scripts/bench_layer_masking.py`` prints them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["bench_forward", "bench_lime", "profile_masked", "random_keep", "timed"]

Log = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


def timed(fn: Callable[[], Any], device: str) -> float:
    """Seconds one call of ``fn`` takes (synchronised on CUDA devices)."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def random_keep(batch: int, size: int, cell: int, hidden: float, seed: int = 0) -> Tensor:
    """Keep masks ``(batch, 1, size, size)`` hiding random ``cell`` px cells (each with probability ``hidden``)."""
    cells = -(-size // cell)
    gen = torch.Generator().manual_seed(seed)
    keep = (torch.rand(batch, 1, cells, cells, generator=gen) >= hidden).float()
    return keep.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :size, :size]


@torch.inference_mode()
def bench_forward(model: nn.Module, x: Tensor, keep: Tensor, repeats: int, device: str, log: Log = _print) -> dict[str, Any]:
    """Plain vs masked forward of a converted ``model`` on ``x`` ``(B, C, H, W)``, ``repeats`` pairs.

    Returns:
        ``{"plain_s", "masked_s" (lists), "ratio" (median masked / median plain), "all_ones_equal"}``.
    """
    model(x[:2]), model(x[:2], keep_mask=keep[:2])  # warm-up (kernel selection)
    same = torch.equal(model(x[:2]), model(x[:2], keep_mask=torch.ones_like(keep[:2])))
    plain_t, masked_t = [], []
    for i in range(repeats):
        plain_t.append(timed(lambda: model(x), device))
        masked_t.append(timed(lambda: model(x, keep_mask=keep), device))
        log(f"  forward pair {i + 1}/{repeats}: plain {plain_t[-1]:.2f} s, masked {masked_t[-1]:.2f} s")
    ratio = statistics.median(masked_t) / statistics.median(plain_t)
    return {"plain_s": plain_t, "masked_s": masked_t, "ratio": ratio, "all_ones_equal": same}


def bench_lime(model: nn.Module, size: int, segments: int, samples: int, batch: int, repeats: int, device: str,
               log: Log = _print) -> dict[str, Any]:
    """One LIME explanation with layer masking vs one with the grey fill, ``repeats`` pairs.

    Same image (scikit-image's astronaut at ``size`` px), same SLIC segments, same perturbation
    matrix, same number of model calls.

    Returns:
        ``{"grey_s", "layer_s" (lists), "ratio", "samples", "segments"}``.
    """
    import numpy as np
    from PIL import Image
    from skimage.data import astronaut

    from visionkit.methods.layer_masking.lime_analysis import MaskedClassifier, explain, segment_image

    photo = np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
    seg = segment_image(photo, "slic", n_segments=segments)
    lm_fn = MaskedClassifier(model, "layer", device=device, max_batch=batch)
    grey_fn = MaskedClassifier(model, "grey", device=device, max_batch=batch)
    label = int(lm_fn(photo[None])[0].argmax())
    grey_t, lm_t = [], []
    for i in range(repeats):
        grey_t.append(timed(lambda: explain(photo, seg, grey_fn, label, samples, batch), device))
        lm_t.append(timed(lambda: explain(photo, seg, lm_fn, label, samples, batch), device))
        log(f"  LIME pair {i + 1}/{repeats}: grey {grey_t[-1]:.2f} s, layer {lm_t[-1]:.2f} s "
            f"({samples} samples, {int(seg.max()) + 1} segments)")
    return {"grey_s": grey_t, "layer_s": lm_t, "ratio": statistics.median(lm_t) / statistics.median(grey_t),
            "samples": samples, "segments": int(seg.max()) + 1}


def profile_masked(model: nn.Module, x: Tensor, keep: Tensor, rows: int = 12) -> str:
    """Operator table (self CPU time) of one masked forward."""
    from torch.profiler import profile

    with torch.inference_mode(), profile() as prof:
        model(x, keep_mask=keep)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
