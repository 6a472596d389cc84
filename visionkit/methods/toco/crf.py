"""Optional dense-CRF post-processing of predicted class probabilities (spec §2.9; official ``utils/dcrf.py``).

Krähenbühl & Koltun's fully connected CRF with a Gaussian (position) and a bilateral (position + colour)
kernel, mean-field inference started from the unary ``-log p``. Official ToCo settings: 10 iterations,
Gaussian ``sxy = 1`` (compat 1), bilateral ``sxy = 121``, ``srgb = 5`` (compat 4).

It needs the compiled ``pydensecrf`` module, which the default install lacks: ``pip install visionkit[crf]``
(the maintained ``pydensecrf2`` build, imported as ``pydensecrf``). It is imported only when a CRF is asked
for; without it :func:`require_pydensecrf` raises :class:`CRFUnavailableError` in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.methods.toco.errors import ToCoError

__all__ = ["CRF_INSTALL", "CRFUnavailableError", "DenseCRF", "require_pydensecrf"]

#: what to install for :class:`DenseCRF`.
CRF_INSTALL = "pip install visionkit[crf]"


class CRFUnavailableError(ToCoError, ImportError):
    """Dense-CRF post-processing was asked for but ``pydensecrf`` is not installed."""


def require_pydensecrf() -> Any:
    """The ``pydensecrf.densecrf`` module; :class:`CRFUnavailableError` (one line) when it is not installed."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise CRFUnavailableError(
            f"dense-CRF post-processing (crf=True) needs the pydensecrf module, which is not installed "
            f"({type(err).__name__}); run: {CRF_INSTALL}"
        ) from None
    return dcrf


@dataclass(frozen=True)
class DenseCRF:
    """Dense CRF over ``K`` classes: ``(probs (K, H, W), image (3, H, W) in [0, 1]) -> (K, H, W)`` marginals.

    Attributes:
        iterations: mean-field steps (official 10).
        gaussian_sxy, gaussian_compat: position kernel width (pixels) and weight (official 1, 1).
        bilateral_sxy, bilateral_srgb, bilateral_compat: bilateral kernel widths (pixels, 0-255 colour
            units) and weight (official 121, 5, 4).
    """

    iterations: int = 10
    gaussian_sxy: float = 1.0
    gaussian_compat: float = 1.0
    bilateral_sxy: float = 121.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 4.0

    def __post_init__(self) -> None:
        if self.iterations < 1 or min(self.gaussian_sxy, self.bilateral_sxy, self.bilateral_srgb) <= 0:
            raise ToCoError(
                f"DenseCRF needs iterations >= 1 and positive kernel widths, got iterations={self.iterations}, "
                f"gaussian_sxy={self.gaussian_sxy}, bilateral_sxy={self.bilateral_sxy}, "
                f"bilateral_srgb={self.bilateral_srgb}"
            )

    def __call__(self, probs: Tensor, image: Tensor) -> Tensor:
        """Refined probabilities ``(K, H, W)`` (float32, on ``probs``' device) of one image."""
        dcrf = require_pydensecrf()
        if probs.ndim != 3 or image.ndim != 3 or image.shape[0] != 3 or probs.shape[-2:] != image.shape[-2:]:
            raise ToCoError(
                f"DenseCRF needs probs (K, H, W) and an RGB image (3, H, W) of the same size, got "
                f"{tuple(probs.shape)} and {tuple(image.shape)}"
            )
        k, h, w = probs.shape
        p = probs.detach().float().clamp_min(1e-8).cpu().numpy()
        unary = np.ascontiguousarray((-np.log(p)).reshape(k, -1), dtype=np.float32)
        rgb = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        crf = dcrf.DenseCRF2D(w, h, k)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy, srgb=self.bilateral_srgb, rgbim=np.ascontiguousarray(rgb), compat=self.bilateral_compat
        )
        q = np.asarray(crf.inference(self.iterations), dtype=np.float32).reshape(k, h, w)
        return torch.from_numpy(q).to(probs.device)
