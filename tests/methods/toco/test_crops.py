"""CTC views: spec §5 oracle 9 (local crop rules: centres in ROI <= 1, crops inside the image, flags,
the fallback), the ROI mask and the second global view."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from visionkit.methods.toco import ToCoError, random_resized_crop, roi_mask, sample_local_crops

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_roi_mask_thresholds_use_the_present_classes():
    cam = (
        torch.tensor([0.25, 0.2501, 0.69, 0.7, 0.9], dtype=torch.float64).view(1, 1, 1, 5).repeat(1, 2, 1, 1)
    )
    cam[0, 1] = 1.0  # an absent class never counts
    roi = roi_mask(cam, torch.tensor([[1, 0]]))
    assert roi.dtype == torch.long and roi.flatten().tolist() == [0, 1, 1, 2, 2]


def make_roi(gen: torch.Generator) -> torch.Tensor:
    """(3, 40, 40): image 0 mixed, image 1 all background, image 2 all confident foreground."""
    roi = torch.randint(0, 3, (3, 40, 40), generator=gen)
    roi[0, :20] = 2
    roi[1] = 0
    roi[2] = 2
    return roi


def test_local_crop_rules():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 40, 40, generator=gen)
    roi = make_roi(gen)
    n, s, m = 6, 12, 6
    out = sample_local_crops(
        images, roi, num_crops=n, crop_size=s, generator=torch.Generator().manual_seed(1)
    )
    assert (
        out.crops.shape == (3, n, 3, s, s) and out.flags.shape == (3, n + 2) and out.flags.dtype == torch.bool
    )
    assert out.flags[:, :2].all()
    for b in range(3):
        centres = out.centres[b].tolist()
        assert len({tuple(c) for c in centres}) == n  # distinct
        for k, (r, c) in enumerate(centres):
            assert m <= r < 40 - m and m <= c < 40 - m  # the crop [r - m, r - m + s) lies inside
            assert torch.equal(out.crops[b, k], images[b, :, r - m : r - m + s, c - m : c - m + s])
            if b == 0:
                assert roi[b, r, c] <= 1
            mean_roi = roi[b, r - m : r - m + s, c - m : c - m + s].double().mean().item()
            assert bool(out.flags[b, k + 2]) == (mean_roi > 0.2)
    assert not out.flags[1, 2:].any()  # all background: every local crop is a negative
    assert out.flags[2, 2:].all()  # all foreground: the fallback draws inner pixels, all positive


def test_fallback_when_too_few_candidates_and_reproducibility():
    roi = torch.full((1, 30, 30), 2)
    roi[0, 10, 10] = 1  # a single candidate, fewer than 4
    images = torch.randn(1, 3, 30, 30)
    a = sample_local_crops(images, roi, 4, 10, generator=torch.Generator().manual_seed(5))
    b = sample_local_crops(images, roi, 4, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.centres, b.centres) and torch.equal(a.crops, b.crops)
    assert len({tuple(c) for c in a.centres[0].tolist()}) == 4
    roi[0, 12:18, 12:18] = 0  # now 37 candidates: every centre must be one of them
    c = sample_local_crops(images, roi, 4, 10, generator=torch.Generator().manual_seed(5))
    assert all(roi[0, r, col] <= 1 for r, col in c.centres[0].tolist())


def test_random_resized_crop():
    images = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    same = random_resized_crop(images, 20, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, images, rtol=1e-12, atol=1e-12)  # the whole image at its own size
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = random_resized_crop(images, (16, 24), generator=gen_a)
    assert a.shape == (2, 3, 16, 24) and torch.equal(
        a, random_resized_crop(images, (16, 24), generator=gen_b)
    )
    assert not torch.allclose(a[0], torch.nn.functional.interpolate(images[:1], (16, 24), mode="bicubic")[0])


def test_errors_name_the_bad_input():
    with pytest.raises(ToCoError) as err:
        sample_local_crops(torch.randn(1, 3, 12, 12), torch.zeros(1, 12, 12), 8, 12)
    assert "12-px crops from 12x12" in error_of(err)
    with pytest.raises(ToCoError):
        sample_local_crops(torch.randn(1, 3, 12, 12), torch.zeros(1, 10, 12), 2, 4)
    with pytest.raises(ToCoError):
        random_resized_crop(torch.randn(1, 3, 8, 8), 8, scale=(0.5, 1.5))
    with pytest.raises(ToCoError):
        roi_mask(torch.rand(2, 3, 4, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]))
