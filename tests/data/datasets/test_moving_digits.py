"""Moving digits: a digit translating 1 px per frame over a static background, a pure function of (seed, index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.data.datasets.digits import digit_images
from visionkit.data.datasets.moving_digits import MovingDigits


def test_items_are_clips_of_the_labelled_digit_and_repeat_exactly() -> None:
    data = MovingDigits(10, np.arange(100), num_frames=6, image_size=28, seed=3)
    item = data[4]
    assert item["video"].shape == (6, 3, 28, 28) and item["video"].dtype == torch.float32
    assert 0 <= float(item["video"].min()) and float(item["video"].max()) <= 1
    assert torch.equal(item["video"], data[(4, 7)]["video"]), "the epoch tag must not change a generated clip"
    assert torch.equal(item["video"], MovingDigits(10, np.arange(100), num_frames=6, image_size=28, seed=3)[4]["video"])
    labels = digit_images()[1][:100]
    assert int(item["label"]) in set(labels.tolist()) and int(item["index"]) == 4
    assert not torch.equal(item["video"], MovingDigits(10, np.arange(100), num_frames=6, image_size=28, seed=4)[4]["video"])


def test_the_digit_moves_one_pixel_per_frame_over_a_static_background() -> None:
    data = MovingDigits(8, np.arange(200), num_frames=5, image_size=32, background="zeros", noise=0.0, channels=1)
    for i in range(8):
        video = data[i]["video"][:, 0]
        assert video.shape == (5, 32, 32)
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        mass = video.sum((1, 2))
        centre = torch.stack([(video * xs).sum((1, 2)) / mass, (video * ys).sum((1, 2)) / mass], 1)
        steps = centre[1:] - centre[:-1]
        torch.testing.assert_close(steps, steps[:1].expand_as(steps), rtol=0, atol=1e-4)  # constant velocity
        assert set(steps[0].round().abs().tolist()) <= {0.0, 1.0} and steps[0].abs().sum() >= 1 - 1e-4


def test_camera_background_is_static_within_a_clip() -> None:
    data = MovingDigits(4, np.arange(50), num_frames=4, noise=0.0)
    video = data[0]["video"]
    unchanged = (video[1:] == video[:-1]).all(0).float().mean()
    assert unchanged > 0.5, "most pixels (the background) must not change between frames"


def test_a_canvas_too_small_for_the_motion_is_rejected() -> None:
    with pytest.raises(ValueError, match="image_size 20 px"):
        MovingDigits(4, np.arange(10), num_frames=8, image_size=20)
