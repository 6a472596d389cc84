"""The balanced segmentation loss (spec §5 oracle 12: finite without foreground, where the official
formula is NaN) and the LargeFOV decoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tests.helpers import error_of
from visionkit.methods.toco import LargeFOV, ToCoError, balanced_seg_loss

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def official_seg_loss(pred: Tensor, label: Tensor) -> Tensor:
    bg, fg = label.clone(), label.clone()
    bg[label != 0] = 255
    fg[label == 0] = 255
    return 0.5 * (F.cross_entropy(pred, bg, ignore_index=255) + F.cross_entropy(pred, fg, ignore_index=255))


def test_matches_the_official_loss_when_both_halves_exist():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 8, 8), generator=gen)
    target[0, :2] = 255
    torch.testing.assert_close(balanced_seg_loss(logits, target), official_seg_loss(logits, target))


def test_finite_without_foreground_or_without_any_label():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, :3] = 255
    assert torch.isnan(official_seg_loss(logits, target))  # the official formula
    loss = balanced_seg_loss(logits, target)
    keep = target == 0
    expected = 0.5 * F.cross_entropy(logits, target, ignore_index=255, reduction="none")[keep].mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert balanced_seg_loss(logits, torch.full((2, 8, 8), 255)).item() == 0.0


def test_logits_are_upsampled_to_the_labels():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (1, 16, 16), generator=gen)
    up = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(balanced_seg_loss(logits, target), official_seg_loss(up, target))


def test_bf16_autocast_gives_a_float32_loss():
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = balanced_seg_loss(logits.bfloat16(), target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_large_fov_keeps_the_grid_and_has_no_bias():
    head = LargeFOV(8, 5, hidden_dim=6, dilation=3)
    assert head(torch.randn(2, 8, 7, 9)).shape == (2, 5, 7, 9)
    assert all(m.bias is None for m in head.modules() if isinstance(m, torch.nn.Conv2d))
    assert head.conv6.dilation == (3, 3) and head.conv7.padding == (3, 3) and head.conv8.kernel_size == (1, 1)
    default = LargeFOV(8, 5)
    assert default.conv6.out_channels == 512 and default.conv6.dilation == (5, 5)


def test_errors_name_the_bad_input():
    with pytest.raises(ToCoError) as err:
        balanced_seg_loss(torch.randn(2, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.long))
    assert "labels (B, H, W)" in error_of(err)
