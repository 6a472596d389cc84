"""Patch token contrast: spec §5 oracles 5 (affinity mask) and 6 (loss range, |cos| scale invariance,
the two exact identities, no gradient into the aux classifier), and the image box on the token grid
(official slicing vs the fix)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.helpers import error_of
from tests.methods.toco import tiny_toco
from visionkit.methods.toco import ToCoError, affinity_mask, ptc_loss, token_labels

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def literal_mask(y: Tensor, ignore: int = 255) -> Tensor:
    b, n = y.shape
    out = torch.empty(b, n, n, dtype=torch.long)
    for k in range(b):
        for i in range(n):
            for j in range(n):
                if i == j or y[k, i] == ignore or y[k, j] == ignore:
                    out[k, i, j] = ignore
                else:
                    out[k, i, j] = int(y[k, i] == y[k, j])
    return out


def pair_counts(y: Tensor) -> tuple[int, int]:
    mask = affinity_mask(y)
    return int((mask == 1).sum()), int((mask == 0).sum())


def test_affinity_mask_matches_its_definition():
    y = torch.tensor([[[0, 1, 1], [255, 0, 2], [1, 1, 255]], [[3, 3, 3], [0, 255, 0], [0, 0, 0]]])
    mask = affinity_mask(y)
    assert mask.dtype == torch.uint8 and mask.shape == (2, 9, 9)
    assert torch.equal(mask.long(), literal_mask(y.flatten(1)))
    assert torch.equal(mask, mask.transpose(1, 2))
    assert (mask.diagonal(dim1=1, dim2=2) == 255).all()
    assert (mask[0, 3] == 255).all() and (mask[0, :, 8] == 255).all()


def test_loss_range_and_invariance_to_token_scaling_and_sign():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 6, 4, 4, generator=gen, dtype=torch.float64)
    mask = affinity_mask(torch.randint(0, 3, (2, 4, 4), generator=gen))
    base = ptc_loss(feats, mask)
    assert 0 <= base.item() < 1
    scale = torch.tensor([2.0, -1.0, 0.3, -7.0], dtype=torch.float64).repeat(4)  # one factor per token
    scaled = feats * scale.view(1, 1, 4, 4)
    torch.testing.assert_close(ptc_loss(scaled, mask), base, rtol=1e-12, atol=1e-12)
    flipped = feats.clone()
    flipped[:, :, 1, 2] *= -1  # |cos| ignores a sign flip; a plain cosine would not
    torch.testing.assert_close(ptc_loss(flipped, mask), base, rtol=1e-12, atol=1e-12)


def test_identity_perfect_tokens():
    """Same-label tokens parallel (any sign and length), different labels orthogonal: L = 0.5 / (N+ + 1)."""
    y = torch.tensor([[[0, 1, 1], [0, 2, 255]], [[1, 1, 1], [2, 2, 0]]])
    basis = torch.eye(4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    feats = torch.stack([basis[int(v) % 4] for v in y.flatten()]).reshape(2, 2, 3, 4).permute(0, 3, 1, 2)
    feats = (
        feats
        * (torch.rand(2, 1, 2, 3, generator=gen, dtype=torch.float64) + 0.5)
        * torch.tensor([1.0, -1.0, 1.0])
    )
    n_pos, _ = pair_counts(y)
    assert ptc_loss(feats, affinity_mask(y)).item() == pytest.approx(0.5 / (n_pos + 1), rel=1e-12)


def test_identity_fully_oversmoothed_tokens():
    y = torch.tensor([[[0, 1, 1], [0, 2, 255]], [[1, 1, 1], [2, 2, 0]]])
    feats = torch.ones(2, 5, 2, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, -3.0, 0.5, 1.0]).view(
        1, 5, 1, 1
    )
    n_pos, n_neg = pair_counts(y)
    expected = 0.5 / (n_pos + 1) + 0.5 * n_neg / (n_neg + 1)
    assert ptc_loss(feats, affinity_mask(y)).item() == pytest.approx(expected, rel=1e-12)


def test_gradient_reaches_the_backbone_but_not_the_aux_classifier():
    model = tiny_toco().train()
    x = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    _, cam_aux = model.multi_scale_cams(x)
    y = token_labels(cam_aux, labels, (8, 8), low=0.1, high=0.5)
    out = model(x)
    ptc_loss(out.features, affinity_mask(y)).backward()
    assert model.aux_classifier.weight.grad is None and model.classifier.weight.grad is None
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_token_labels_box_official_slicing_vs_stride():
    """A padded crop whose valid box starts at pixel row 8 of a 32-px input (grid 8x8, stride 4)."""
    cam = torch.zeros(1, 2, 32, 32)
    cam[0, 0, :, 16:] = 1.0  # class 0 on the right half
    labels = torch.tensor([[1, 0]])
    box = torch.tensor([[8, 32, 0, 32]])
    fixed = token_labels(cam, labels, (8, 8), img_box=box)
    official = token_labels(cam, labels, (8, 8), img_box=box, official_box=True)
    assert (official == 255).all()  # the official bug: the whole image loses its PTC pairs
    assert (fixed[0, :2] == 255).all() and (fixed[0, 2:, :4] == 0).all() and (fixed[0, 2:, 4:] == 1).all()
    unboxed = token_labels(cam, labels, (8, 8))
    assert (unboxed != 255).all() and torch.equal(unboxed[:, 2:], fixed[:, 2:])


def test_errors_name_the_bad_input():
    with pytest.raises(ToCoError) as err:
        ptc_loss(torch.randn(2, 4, 3, 3), torch.zeros(2, 8, 8, dtype=torch.uint8))
    assert "(B, h*w, h*w)" in error_of(err)
    with pytest.raises(ToCoError):
        token_labels(torch.rand(1, 2, 8, 8), torch.zeros(1, 2), (2, 2))
