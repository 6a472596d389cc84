"""Clip augmentation: one crop and flip per clip, the same on every frame, drawn from the caller's generator."""

from __future__ import annotations

import torch

from visionkit.data.transforms import ClipAugment, resize_frames


def test_every_frame_gets_the_same_crop_and_flip() -> None:
    frame = torch.rand(3, 40, 40)
    clip = frame.expand(6, -1, -1, -1).clone()
    augment = ClipAugment(24)
    outs = [augment(clip, torch.Generator().manual_seed(s)) for s in range(8)]
    for out in outs:
        assert out.shape == (6, 3, 24, 24)
        torch.testing.assert_close(out, out[:1].expand_as(out), rtol=0, atol=0)
    boxes = {augment.crop_box(40, 40, torch.Generator().manual_seed(s)) for s in range(8)}
    assert len(boxes) > 4, "different generators should draw different crop boxes"


def test_the_same_generator_seed_gives_the_same_augmentation() -> None:
    clip = torch.rand(4, 3, 32, 32)
    a = ClipAugment(16)(clip, torch.Generator().manual_seed(5))
    b = ClipAugment(16)(clip, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_motion_survives_the_augmentation() -> None:
    clip = torch.zeros(3, 1, 32, 32)
    for t in range(3):
        clip[t, 0, 10:14, 8 + 4 * t : 12 + 4 * t] = 1.0  # a square moving right 4 px per frame
    out = ClipAugment(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)(clip, torch.Generator().manual_seed(0))
    columns = [float((out[t, 0].sum(0) * torch.arange(32)).sum() / out[t, 0].sum()) for t in range(3)]
    assert columns[1] - columns[0] > 3 and columns[2] - columns[1] > 3


def test_resize_frames_squashes_to_the_side() -> None:
    assert resize_frames(torch.rand(2, 3, 20, 30), 16).shape == (2, 3, 16, 16)
