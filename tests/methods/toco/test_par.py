"""PAR and the refined pseudo labels: spec §5 oracles 10 (sum 1.01^T, constants, size, edges,
against a literal convolution-based PAR) and 11 (label values, monotone in both thresholds,
against the official per-image loop), bf16 autocast and the one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tests.helpers import error_of
from visionkit.methods.toco import PAR, ToCoError, box_mask, refine_pseudo_labels

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

DILATIONS = (1, 2, 4, 8, 12, 24)


def literal_neighbours(x: Tensor, dilations=DILATIONS) -> Tensor:
    """One 3x3 one-hot kernel per neighbour, a dilated convolution per ring, replicate padding per ring."""
    kernel = torch.zeros(8, 1, 3, 3, dtype=x.dtype)
    for k, (r, c) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]):
        kernel[k, 0, r, c] = 1
    b, ch, h, w = x.shape
    rings = []
    for d in dilations:
        padded = F.pad(x, [d] * 4, mode="replicate").reshape(b * ch, 1, h + 2 * d, w + 2 * d)
        rings.append(F.conv2d(padded, kernel, dilation=d).view(b, ch, 8, h, w))
    return torch.cat(rings, dim=2)


def literal_par(
    images: Tensor, masks: Tensor, num_iter: int = 10, w1: float = 0.3, w2: float = 0.01
) -> Tensor:
    masks = F.interpolate(masks, size=images.shape[-2:], mode="bilinear", align_corners=True)
    nb = literal_neighbours(images)
    diff = (nb - images[:, :, None]).abs()
    aff = (-((diff / (nb.std(dim=2, keepdim=True) + 1e-8) / w1) ** 2)).mean(dim=1, keepdim=True)
    ring = torch.tensor(
        [math.sqrt(2), 1, math.sqrt(2), 1, 1, math.sqrt(2), 1, math.sqrt(2)], dtype=images.dtype
    )
    dist = torch.cat([ring * d for d in DILATIONS]).view(1, 1, -1, 1, 1).expand(*aff.shape)
    pos = -((dist / (dist.std(dim=2, keepdim=True) + 1e-8) / w1) ** 2)
    aff = aff.softmax(dim=2) + w2 * pos.softmax(dim=2)
    for _ in range(num_iter):
        masks = (literal_neighbours(masks) * aff).sum(dim=2)
    return masks


def test_par_matches_the_literal_convolution_version():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 20, 26, generator=gen, dtype=torch.float64)
    masks = torch.rand(2, 3, 10, 13, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(PAR()(images, masks), literal_par(images, masks), rtol=1e-10, atol=1e-12)


def test_par_sums_to_1_01_to_the_t_keeps_constants_and_takes_the_image_size():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 24, 24, generator=gen, dtype=torch.float64)
    masks = torch.randn(2, 4, 12, 12, generator=gen, dtype=torch.float64).softmax(dim=1)
    out = PAR()(images, masks)
    assert out.shape == (2, 4, 24, 24)
    torch.testing.assert_close(out.sum(dim=1), torch.full((2, 24, 24), 1.01**10, dtype=torch.float64))
    assert 1.01**10 == pytest.approx(1.104622, abs=1e-6)
    constant = PAR(num_iter=4)(images, torch.full((2, 1, 5, 7), 0.3, dtype=torch.float64))
    torch.testing.assert_close(constant, torch.full((2, 1, 24, 24), 0.3 * 1.01**4, dtype=torch.float64))


def two_region_case(kind: str) -> tuple[Tensor, Tensor, Tensor]:
    """A 32x32 image of two flat colours, the true region map, and a 4x4 area-pooled score map."""
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    truth = (xx >= 10) if kind == "vertical" else (xx + 0.6 * yy >= 20)
    truth = truth.long()[None]
    images = (0.2 + 0.6 * truth.double())[:, None].expand(1, 3, 32, 32)
    coarse = F.adaptive_avg_pool2d(F.one_hot(truth, 2).permute(0, 3, 1, 2).double(), 4).softmax(dim=1)
    return images, truth, coarse


@pytest.mark.parametrize("kind", ["vertical", "diagonal"])
def test_par_follows_a_colour_edge_better_than_bilinear_upsampling(kind):
    images, truth, coarse = two_region_case(kind)
    plain = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=True).argmax(dim=1)
    refined = PAR()(images, coarse).argmax(dim=1)
    plain_acc = (plain == truth).double().mean().item()
    refined_acc = (refined == truth).double().mean().item()
    assert refined_acc > plain_acc + 0.03 and refined_acc > 0.99


def test_par_under_bf16_autocast():
    gen = torch.Generator().manual_seed(2)
    images, masks = torch.rand(1, 3, 16, 16, generator=gen), torch.rand(1, 2, 8, 8, generator=gen)
    ref = PAR()(images, masks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = PAR()(images, masks)
        labels = refine_pseudo_labels(images, torch.rand(1, 2, 16, 16, generator=gen), torch.tensor([[1, 1]]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert labels.dtype == torch.long and labels.shape == (1, 16, 16)


def literal_refine(images: Tensor, cam: Tensor, labels: Tensor, high: float, low: float) -> Tensor:
    """The official per-image loop (no box): softmax over [background, present classes] per image."""
    b, _, h, w = images.shape
    small = (h // 2, w // 2)
    images = torch.floor(images * 255) / 255
    imgs = F.interpolate(images, size=small, mode="bilinear", align_corners=False)
    out = torch.empty(b, h, w, dtype=torch.long)
    for i in range(b):
        keys = torch.cat([torch.zeros(1, dtype=torch.long), labels[i].nonzero().flatten() + 1])
        results = []
        for bkg in (high, low):
            stack = torch.cat([torch.full((1, 1, h, w), bkg, dtype=cam.dtype), cam[i : i + 1]], dim=1)
            stack = F.interpolate(stack, size=small, mode="bilinear", align_corners=False)[:, keys].softmax(
                dim=1
            )
            refined = F.interpolate(
                PAR()(imgs[i : i + 1], stack), size=(h, w), mode="bilinear", align_corners=False
            )
            results.append(keys[refined.argmax(dim=1)][0])
        label_h, label_l = results
        label = label_h.clone()
        label[label_h == 0] = 255
        label[(label_h + label_l) == 0] = 0
        out[i] = label
    return out


def random_case(seed: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 24, 24, generator=gen, dtype=torch.float64)
    cam = F.interpolate(
        torch.rand(3, 4, 6, 6, generator=gen, dtype=torch.float64) ** 2, size=(24, 24), mode="bilinear"
    )
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]])
    return images, cam, labels


def test_pseudo_labels_match_the_official_per_image_loop():
    images, cam, labels = random_case()
    out = refine_pseudo_labels(images, cam, labels)
    assert torch.equal(out, literal_refine(images, cam, labels, 0.7, 0.25))
    for i in range(3):
        allowed = {0, 255} | {c + 1 for c in labels[i].nonzero().flatten().tolist()}
        assert set(out[i].unique().tolist()) <= allowed
    assert {0, 255} <= set(out.unique().tolist()) and len(set(out.unique().tolist())) > 3


def test_pseudo_labels_are_monotone_in_both_thresholds_and_respect_the_box():
    images, cam, labels = random_case(4)
    base = refine_pseudo_labels(images, cam, labels, high=0.7, low=0.25)
    raised = refine_pseudo_labels(images, cam, labels, high=0.8, low=0.25)
    lowered = refine_pseudo_labels(images, cam, labels, high=0.7, low=0.1)
    fg = (base != 0) & (base != 255)
    assert not ((raised != 0) & (raised != 255) & ~fg).any()  # no new foreground
    assert ((raised != 0) & (raised != 255)).sum() < fg.sum()  # and some foreground lost
    assert not ((lowered == 0) & (base != 0)).any()  # no new background
    assert (lowered == 0).sum() < (base == 0).sum()
    valid = box_mask(torch.tensor([[0, 24, 0, 24], [4, 20, 0, 12], [0, 10, 5, 24]]), (24, 24))
    boxed = refine_pseudo_labels(images, cam, labels, valid=valid)
    assert (boxed[~valid] == 255).all() and torch.equal(boxed[valid], base[valid])


def test_errors_name_the_bad_input():
    images, cam, labels = random_case()
    with pytest.raises(ToCoError) as err:
        refine_pseudo_labels(images, cam, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]))
    assert "image 1" in error_of(err)
    empty = refine_pseudo_labels(images, cam, torch.zeros(3, 4, dtype=torch.long), allow_unlabelled=True)
    assert (empty == 0).all()
    with pytest.raises(ToCoError):
        refine_pseudo_labels(images[:, :, :20], cam, labels)
    with pytest.raises(ToCoError):
        refine_pseudo_labels(images, cam, labels, high=0.2, low=0.5)
    with pytest.raises(ToCoError) as err:
        PAR()(torch.rand(2, 3, 8, 8), torch.rand(1, 2, 8, 8))
    assert "masks (B, K" in error_of(err)
    with pytest.raises(ToCoError):
        PAR(dilations=(0, 1))
