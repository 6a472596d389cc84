"""``DirectDragConfig``: the official DXD script defaults, the DragDiffusion preset (spec §2.9),
resolution scaling (§6.2) and one-line errors."""

from __future__ import annotations

import pytest

from tests.helpers import error_of
from visionkit.methods.directdrag import DirectDragConfig, DirectDragError, inversion_plan, make_scheduler


def test_defaults_are_the_dxd_scripts() -> None:
    c = DirectDragConfig()
    assert (c.num_steps, c.inversion_strength, c.drag_end_step) == (50, 0.75, 7)
    assert (c.latent_lr, c.track_per_step, c.max_drag_per_track, c.max_track_no_change) == (0.02, 10, 3, 5)
    assert (c.r1, c.r2, c.beta, c.lam, c.soft_mask_sigma) == (4, 12, 4.0, 0.1, 30.0)
    assert (c.rg_multiplier, c.warpage_ratio, c.kv_start_layer) == (350.0, 0.15, 10)
    assert (c.lora_rank, c.lora_steps, c.lora_lr, c.lora_batch) == (16, 70, 5e-4, 4)
    assert c.soft_mask and c.readout_guidance and c.warpage and c.kv_injection and not c.soft_mask_transposed
    assert c.ms_weight == 64
    plan = inversion_plan(make_scheduler(c.num_steps), c.inversion_strength)
    assert plan.t_star == 741


def test_dragdiffusion_preset() -> None:
    d = DirectDragConfig.dragdiffusion()
    assert (d.inversion_strength, d.latent_lr, d.r1, d.r2, d.lora_steps, d.n_pix_step) == (
        0.7,
        0.01,
        1,
        3,
        80,
        80,
    )
    assert not (d.soft_mask or d.readout_guidance or d.warpage)
    assert d.kv_during_drag and d.motion_reference == "current" and d.tracking_border == "clip"
    assert d.ms_weight == 9
    assert inversion_plan(make_scheduler(d.num_steps), d.inversion_strength).t_star == 681
    assert DirectDragConfig.dragdiffusion(latent_lr=0.02).latent_lr == 0.02


def test_scaled_to_a_small_grid() -> None:
    s = DirectDragConfig().scaled_to(32)
    assert (s.r1, s.r2, s.beta, s.soft_mask_sigma) == (1, 2, 1.0, 3.75)
    assert DirectDragConfig().scaled_to(256) == DirectDragConfig()


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"inversion_strength": 0.0}, "inversion_strength must be in (0, 1]"),
        ({"motion_reference": "x"}, "motion_reference must be 'initial' or 'current', got 'x'"),
        ({"track_per_step": 0}, "track_per_step must be a positive integer"),
        ({"soft_mask_sigma": -1.0}, "soft_mask_sigma must be positive"),
        ({"r2": -1}, "r2 must be >= 0"),
    ],
)
def test_bad_values_are_one_line_errors(changes: dict, text: str) -> None:
    with pytest.raises(DirectDragError) as info:
        DirectDragConfig(**changes)
    assert text in error_of(info)
