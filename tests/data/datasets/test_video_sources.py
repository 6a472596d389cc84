"""Video sources: generated mp4/avi/webm/mkv files and frame folders decode to the frames written (codec
tolerance: mean absolute error < 0.03 on flat frames, and every frame identified by its grey level),
with the probed frame count and rate; random access in any order; seeking decodes only from the
keyframe before the first wanted frame; bad files and folders fail with one line naming them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.video_files import frame_index, moving_frames, write_frame_folder, write_video
from visionkit.data.clips import ClipSampler
from visionkit.data.datasets.video_sources import FrameFolder, VideoFile, open_video
from visionkit.data.errors import VideoReadError

#: Mean absolute error allowed between written and decoded flat frames (pixels in [0, 1]); measured
#: about 0.004-0.006 for these codecs and JPEG.
TOLERANCE = 0.03


def as_float(frames: np.ndarray) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> float ``(T, 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm", ".mkv"])
def test_video_file_decodes_the_written_frames(tmp_path: Path, suffix: str) -> None:
    frames = moving_frames(30, 32, seed=1)
    video = open_video(write_video(tmp_path / f"clip{suffix}", frames, fps=10))
    assert isinstance(video, VideoFile)
    assert video.num_frames == 30 and video.fps == 10 and video.duration == pytest.approx(3.0)
    # mp4/avi carry a frame count; Matroska/WebM do not, so their packets are counted
    assert video.frame_count_source == ("packets" if suffix in (".webm", ".mkv") else "metadata")
    decoded = video.read(torch.arange(30))
    assert decoded.dtype == torch.float32 and decoded.shape == (30, 3, 32, 32)
    assert 0 <= decoded.min() and decoded.max() <= 1
    assert (decoded - as_float(frames)).abs().mean() < TOLERANCE
    assert [frame_index(f) for f in decoded] == list(range(30))


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm"])
def test_resampled_clip_reads_every_other_source_frame(tmp_path: Path, suffix: str) -> None:
    video = open_video(write_video(tmp_path / f"clip{suffix}", moving_frames(30, 32), fps=10))
    sampler = ClipSampler(num_frames=5, fps=5, mode="sliding")
    indices, start = sampler.frames(video.num_frames, video.fps, clip=0)
    clip = video.read(indices)
    assert start == 0 and [frame_index(f) for f in clip] == [0, 2, 4, 6, 8]
    indices, start = sampler.frames(video.num_frames, video.fps, clip=1)
    assert start == pytest.approx(1.0) and [frame_index(f) for f in video.read(indices)] == [10, 12, 14, 16, 18]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_random_access_in_any_order_with_repeats(tmp_path: Path, suffix: str) -> None:
    video = open_video(write_video(tmp_path / f"clip{suffix}", moving_frames(30, 32), fps=10))
    clip = video.read(torch.tensor([7, 3, 3, 20]))
    assert clip.shape == (4, 3, 32, 32)
    assert [frame_index(f) for f in clip] == [7, 3, 3, 20]
    assert torch.equal(clip[1], clip[2])


def test_a_late_clip_seeks_instead_of_decoding_from_the_start(tmp_path: Path) -> None:
    video = VideoFile(write_video(tmp_path / "clip.mp4", moving_frames(30, 32), fps=10))  # keyframes every 8 frames
    clip = video.read(torch.tensor([20, 21, 22]))
    assert [frame_index(f) for f in clip] == [20, 21, 22]
    assert video.frames_decoded <= 10  # from the keyframe at 16 (a few more for B-frame reordering), not 23
    video.read(torch.tensor([0, 1]))
    assert video.frames_decoded <= 4


def test_indices_past_the_last_decodable_frame_read_the_last_frame(tmp_path: Path) -> None:
    video = VideoFile(write_video(tmp_path / "clip.mp4", moving_frames(12, 32), fps=10))
    video.num_frames = 20  # a container that over-reports its frame count
    assert [frame_index(f) for f in video.read(torch.tensor([10, 15, 19]))] == [10, 11, 11]
    assert [frame_index(f) for f in video.read(torch.tensor([11, 30]))] == [11, 11]
    with pytest.raises(ValueError, match=r">= 0"):
        video.read(torch.tensor([-1, 2]))


def test_a_decode_error_mid_stream_names_the_file(tmp_path: Path) -> None:
    data = bytearray(write_video(tmp_path / "clip.mp4", moving_frames(30, 32, seed=1), fps=10).read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    (tmp_path / "broken.mp4").write_bytes(bytes(data))
    video = VideoFile(tmp_path / "broken.mp4")  # the header is intact: probing succeeds
    with pytest.raises(VideoReadError, match=r"^unreadable video '.*broken\.mp4': decode error after frame \d+") as info:
        video.read(torch.arange(30))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_frame_folder_reads_the_written_frames(tmp_path: Path, ext: str) -> None:
    frames = moving_frames(12, 16, seed=2)
    video = open_video(write_frame_folder(tmp_path / "v1", frames, ext), fps=25)
    assert isinstance(video, FrameFolder)
    assert video.num_frames == 12 and video.fps == 25 and video.duration == pytest.approx(12 / 25)
    clip = video.read(torch.tensor([5, 0, 5, 11, 14]))
    assert clip.shape == (5, 3, 16, 16)
    assert [frame_index(f) for f in clip] == [5, 0, 5, 11, 11]
    assert (clip[:4] - as_float(frames[[5, 0, 5, 11]])).abs().mean() < TOLERANCE


def test_frame_folder_errors_are_one_line(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "v1", moving_frames(5, 16))
    (folder / "img_00003.jpg").unlink()
    with pytest.raises(VideoReadError, match=r"frame img_00003\.jpg is missing") as info:
        FrameFolder(folder, fps=10)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a frame")
    with pytest.raises(VideoReadError, match=r"'.*empty': frames folder holds no frames; expected frames img_00001"):
        FrameFolder(tmp_path / "empty", fps=10)
    mixed = write_frame_folder(tmp_path / "mixed", moving_frames(2, 16))
    write_frame_folder(tmp_path / "other", moving_frames(3, 16), ".png")
    (tmp_path / "other" / "img_00003.png").rename(mixed / "img_00003.png")
    with pytest.raises(VideoReadError, match=r"mixes extensions \['\.jpg', '\.png'\]"):
        FrameFolder(mixed, fps=10)
    (tmp_path / "other" / "img_00001.png").rename(tmp_path / "other" / "frame1.png")
    with pytest.raises(VideoReadError, match=r"frame file 'frame1\.png' is misnamed"):
        FrameFolder(tmp_path / "other", fps=10)
    with pytest.raises(VideoReadError, match="does not exist"):
        FrameFolder(tmp_path / "missing", fps=10)


def test_unreadable_frame_names_the_file(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "v1", moving_frames(3, 16))
    (folder / "img_00002.jpg").write_bytes(b"\xff\xd8 truncated")
    video = FrameFolder(folder, fps=10)
    with pytest.raises(VideoReadError, match=r"'.*v1': frame img_00002\.jpg cannot be decoded"):
        video.read(torch.tensor([0, 1]))


def test_bad_video_files_fail_at_probe_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    cases = {
        "missing.mp4": "file does not exist; expected a video file",
        "empty.mp4": r"file is empty \(0 bytes\); expected a video file",
        "noise.mp4": "cannot be opened as a video container",
    }
    for name, reason in cases.items():
        with pytest.raises(VideoReadError, match=rf"^unreadable video '.*{name}': {reason}") as info:
            VideoFile(tmp_path / name)
        assert "\n" not in str(info.value)


def test_a_file_without_a_video_stream_is_refused(tmp_path: Path) -> None:
    import av

    with av.open(str(tmp_path / "sound.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoReadError, match=r"'.*sound\.mp4': no video stream \(streams: audio\)"):
        VideoFile(tmp_path / "sound.mp4")


def test_open_video_checks_fps(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "frames", moving_frames(2, 16))
    video = write_video(tmp_path / "clip.mp4", moving_frames(4, 16), fps=10)
    with pytest.raises(ValueError, match=r"'.*frames' is a frames folder: pass its fps"):
        open_video(folder)
    with pytest.raises(ValueError, match=r"'.*clip\.mp4' is a video file, which carries its own frame rate"):
        open_video(video, fps=10)
    with pytest.raises(ValueError, match="must be positive"):
        open_video(folder, fps=0)
    assert open_video(str(video)).path == video


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_resampling_from_ntsc_rate_reads_the_frame_shown_at_each_time(tmp_path: Path, suffix: str) -> None:
    """29.97 fps -> 8 fps: clip frame k is the source frame shown at k / 8 s, i.e. floor(k / 8 * 30000 / 1001)."""
    ntsc = 30000 / 1001
    source = open_video(write_video(tmp_path / f"ntsc{suffix}", moving_frames(30, 16), ntsc))
    assert source.fps == pytest.approx(ntsc, rel=1e-6) and source.num_frames == 30
    sampler = ClipSampler(num_frames=6, fps=8, mode="sliding")
    indices, start = sampler.frames(source.num_frames, source.fps, clip=0)
    expected = [int(k / 8 * ntsc) for k in range(6)]
    assert indices.tolist() == expected == [0, 3, 7, 11, 14, 18] and start == 0.0
    decoded = source.read(indices)
    assert [frame_index(frame.permute(1, 2, 0).numpy() * 255) for frame in decoded] == expected
