"""The video writer: what it encodes decodes back to the same frames (within codec tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.data.datasets.video_sources import open_video
from visionkit.data.video_writer import write_frame_folder, write_video


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi"])
def test_written_video_decodes_to_its_frames(tmp_path, suffix: str) -> None:
    levels = np.linspace(30, 220, 12).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (12, 16, 24, 3)).copy()
    source = open_video(write_video(tmp_path / f"clip{suffix}", frames, fps=6))
    assert source.num_frames == 12 and source.fps == pytest.approx(6)
    decoded = source.read(torch.arange(12))
    assert decoded.shape == (12, 3, 16, 24)
    error = (decoded - torch.from_numpy(frames).permute(0, 3, 1, 2) / 255).abs().mean()
    assert error < 0.03, f"mean absolute error {error:.4f} at the default quality"


def test_frame_folder_and_bad_frames(tmp_path) -> None:
    frames = np.full((3, 8, 8, 3), 128, np.uint8)
    folder = write_frame_folder(tmp_path / "v", frames)
    assert sorted(p.name for p in folder.iterdir()) == ["img_00001.jpg", "img_00002.jpg", "img_00003.jpg"]
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 7, 8, 3), np.uint8), fps=5)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=5)
