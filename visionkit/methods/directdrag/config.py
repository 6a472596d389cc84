"""``DirectDragConfig``: every hyper-parameter of the editor, defaults = the official DXD scripts (spec §2, §2.9).

Units: ``r1``, ``r2``, ``beta``, ``soft_mask_sigma`` and ``reach`` are supervision-grid pixels at a
256-px grid (a 512-px image); :meth:`DirectDragConfig.scaled_to` rescales them for other grids
(spec §6.2). ``sup_to_latent`` is the supervision-grid / latent size ratio (4 for SD1.5, spec §6.16).
``dragdiffusion()`` is the DragDiffusion preset (§2.9): one drag phase at t*, user mask instead of the
soft mask, no readout guidance or warpage, KV injection on every denoising step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from visionkit.errors import check_choice
from visionkit.methods.directdrag.errors import DirectDragError

__all__ = ["DirectDragConfig"]


@dataclass(frozen=True)
class DirectDragConfig:
    """Hyper-parameters of a drag edit (defaults: ``run_directdrag_dragbench.py``)."""

    # schedule (§2.0, §2.2)
    num_steps: int = 50
    inversion_strength: float = 0.75
    drag_end_step: int = 7  # T2: drag at denoising steps i < T2
    # drag optimisation (§2.6)
    latent_lr: float = 0.02
    track_per_step: int = 10
    max_drag_per_track: int = 3
    max_track_no_change: int = 5
    feature_idx: int | None = None  # None: len(up_blocks) - 1 (3 for SD1.5, mid block = 0)
    r1: int = 4
    r2: int = 12
    beta: float = 4.0
    reach: float = 2.0
    motion_reference: Literal["initial", "current"] = "initial"  # F0(t) at h0 (DXD) / F1 at p detached (DD)
    tracking_border: Literal["zero_pad", "clip"] = "zero_pad"
    sup_to_latent: int = 4
    # regulariser and soft mask (§2.5)
    lam: float = 0.1
    soft_mask: bool = True
    soft_mask_sigma: float = 30.0
    soft_mask_transposed: bool = False  # True: the official transposed mask (§2.5 code bug)
    # readout-guided feature alignment (§2.7)
    readout_guidance: bool = True
    rg_multiplier: float = 350.0
    loss_rescale: float = 1.0
    rg_reference: Literal["official", "matched"] = "official"
    # latent warpage (§2.4)
    warpage: bool = True
    warpage_ratio: float = 0.15
    # KV injection (§2.8)
    kv_injection: bool = True
    kv_start_layer: int = 10
    kv_during_drag: bool = False  # DD injects on every denoising step
    # per-image LoRA (§2.1)
    lora_rank: int = 16
    lora_steps: int = 70
    lora_lr: float = 5e-4
    lora_batch: int = 4
    lora_augment: bool = True
    seed: int = 0
    # DragDiffusion-only: Adam steps of its single drag phase at t*
    n_pix_step: int = 80

    def __post_init__(self) -> None:
        check_choice("motion_reference", self.motion_reference, ("initial", "current"), DirectDragError)
        check_choice("tracking_border", self.tracking_border, ("zero_pad", "clip"), DirectDragError)
        check_choice("rg_reference", self.rg_reference, ("official", "matched"), DirectDragError)
        if not 0.0 < self.inversion_strength <= 1.0:
            raise DirectDragError(f"inversion_strength must be in (0, 1], got {self.inversion_strength}")
        for name in (
            "num_steps",
            "track_per_step",
            "max_drag_per_track",
            "max_track_no_change",
            "sup_to_latent",
        ):
            if getattr(self, name) < 1:
                raise DirectDragError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("r1", "r2", "drag_end_step"):
            if getattr(self, name) < 0:
                raise DirectDragError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("latent_lr", "beta", "soft_mask_sigma"):
            if not getattr(self, name) > 0:
                raise DirectDragError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.warpage_ratio <= 1.0:
            raise DirectDragError(f"warpage_ratio must be in [0, 1], got {self.warpage_ratio}")

    @property
    def ms_weight(self) -> int:
        """The per-pair motion-supervision weight: ``(2 r1)^2`` (DXD, 64) or ``(2 r1 + 1)^2`` (DD, 9)."""
        return (2 * self.r1) ** 2 if self.motion_reference == "initial" else (2 * self.r1 + 1) ** 2

    def replace(self, **changes) -> DirectDragConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def scaled_to(self, grid_height: int, reference: int = 256) -> DirectDragConfig:
        """Radii, step and σ scaled by ``grid_height / reference`` (spec §6.2); radii stay >= 1."""
        f = grid_height / reference
        return self.replace(
            r1=max(1, round(self.r1 * f)),
            r2=max(1, round(self.r2 * f)),
            beta=max(1.0, self.beta * f),
            soft_mask_sigma=max(1.0, self.soft_mask_sigma * f),
        )

    @classmethod
    def dragdiffusion(cls, **changes) -> DirectDragConfig:
        """The DragDiffusion preset (spec §2.9; DD's ``run_drag_diffusion.py`` defaults)."""
        preset = {
            "inversion_strength": 0.7,
            "drag_end_step": 1,  # a single drag phase at t*
            "latent_lr": 0.01,
            "r1": 1,
            "r2": 3,
            "beta": 1.0,
            "motion_reference": "current",
            "tracking_border": "clip",
            "soft_mask": False,
            "readout_guidance": False,
            "warpage": False,
            "kv_during_drag": True,
            "lora_steps": 80,
            "lora_augment": False,
            "n_pix_step": 80,
        }
        return cls(**{**preset, **changes})
