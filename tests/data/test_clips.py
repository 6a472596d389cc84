"""Clip sampling and frame-rate resampling: which source frames each clip reads, and window cropping."""

from __future__ import annotations

import pytest
import torch

from visionkit.data.clips import ClipSampler, crop_segments, resampled_length


def test_sliding_windows_at_a_lower_frame_rate_read_every_other_frame() -> None:
    sampler = ClipSampler(num_frames=4, fps=5, mode="sliding", stride=2)
    # 30 frames at 10 fps = 3 s = 15 frames at 5 fps -> windows start at 0, 2, ..., 10, then 11 (aligned to the end)
    assert resampled_length(30, 10, 5) == 15
    assert sampler.num_clips(30, 10) == 7
    indices, start = sampler.frames(30, 10, clip=1)
    assert indices.tolist() == [4, 6, 8, 10] and start == pytest.approx(0.4)
    last, start = sampler.frames(30, 10, clip=6)
    assert last.tolist() == [22, 24, 26, 28] and start == pytest.approx(2.2)
    with pytest.raises(IndexError):
        sampler.frames(30, 10, clip=7)


def test_higher_frame_rate_repeats_frames_and_short_videos_repeat_their_last_frame() -> None:
    up = ClipSampler(num_frames=6, fps=20, mode="sliding")
    assert up.frames(30, 10, clip=0)[0].tolist() == [0, 0, 1, 1, 2, 2]
    short = ClipSampler(num_frames=8, mode="random")
    assert short.frames(5, 10)[0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_uniform_spreads_over_the_whole_video_and_random_is_seeded() -> None:
    uniform = ClipSampler(num_frames=4, mode="uniform")
    assert uniform.frames(40, 25)[0].tolist() == [5, 15, 25, 35]
    random = ClipSampler(num_frames=4, mode="random")
    centred = random.frames(100, 10)[0]
    assert centred.tolist() == [48, 49, 50, 51]
    draws = {tuple(random.frames(100, 10, generator=torch.Generator().manual_seed(s))[0].tolist()) for s in range(20)}
    assert len(draws) > 10, "random starts barely vary"
    again = random.frames(100, 10, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(again, random.frames(100, 10, generator=torch.Generator().manual_seed(3))[0])


def test_bad_sampler_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="clip mode must be"):
        ClipSampler(4, mode="dense")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        ClipSampler(4, fps=0)
    with pytest.raises(ValueError, match="stride"):
        ClipSampler(4, mode="sliding", stride=0)


def test_crop_segments_keeps_overlaps_relative_to_the_window() -> None:
    segments = torch.tensor([[0.5, 1.5], [2.0, 6.0], [7.0, 8.0]])
    labels = torch.tensor([0, 1, 2])
    cropped, kept = crop_segments(segments, labels, 1.0, 5.0)
    assert cropped.tolist() == [[0.0, 0.5], [1.0, 4.0]] and kept.tolist() == [0, 1]
    empty, none = crop_segments(segments, labels, 6.0, 7.0)  # touching the third segment is no overlap
    assert empty.shape == (0, 2) and none.shape == (0,)
