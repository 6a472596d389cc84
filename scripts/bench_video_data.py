"""Throughput of the video datamodules (clips per second), measured side by side in one run.

1. ``MovingDigitsDataModule`` (generated clips) at its defaults: 8 frames, 32 px, batch 32.
2. ``VideoFolderDataModule`` over generated mp4 files (2 classes, ``--videos`` videos of 240 frames at
   30 fps, 160x120 px, written to a temporary folder) at its defaults: 8-frame random clips, 112 px,
   batch 8; with 0 and with 2 worker processes.

    python scripts/bench_video_data.py                  # ~1 min on 2 CPU cores
    python scripts/bench_video_data.py --batches 40 --videos 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_video_data", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batches", type=int, default=20, help="timed batches per loader")
    p.add_argument("--videos", type=int, default=16, help="generated video files per class")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the second file-loader arm")
    return p.parse_args(argv)


def write_videos(root: Path, per_class: int) -> Path:
    """``root/<class>/<i>.mp4``: textured frames with a bright square moving across (seeded)."""
    from visionkit.data.video_writer import write_video

    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        for i in range(per_class):
            frames = np.repeat(rng.integers(0, 200, (1, 120, 160, 3), dtype=np.uint8), 240, axis=0)
            for t in range(240):
                x = (t if label == "right" else 239 - t) * 140 // 240
                frames[t, 50:70, x : x + 20] = 255
            write_video(root / label / f"{i:03d}.mp4", frames, fps=30)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from visionkit.data.datamodules import MovingDigitsDataModule, VideoFolderDataModule
    from visionkit.data.throughput import loader_throughput
    from visionkit.errors import exit_on_user_error

    torch.set_num_threads(1)
    with exit_on_user_error("bench_video_data"), tempfile.TemporaryDirectory() as tmp:
        print(f"writing {2 * args.videos} mp4 files (240 frames, 160x120, 30 fps) ...", file=sys.stderr)
        root = write_videos(Path(tmp), args.videos)
        arms = {
            "MovingDigitsDataModule, 0 workers": MovingDigitsDataModule(),
            "VideoFolderDataModule, 0 workers": VideoFolderDataModule(str(root), val_fraction=0.1),
            f"VideoFolderDataModule, {args.workers} workers": VideoFolderDataModule(
                str(root), val_fraction=0.1, num_workers=args.workers
            ),
        }
        rates = {}
        for name, dm in arms.items():
            dm.setup("fit")
            result = loader_throughput(dm.train_dataloader(), batches=args.batches)
            rates[name] = result.per_second
            print(f"{name:<40} {result.per_second:8.1f} clips/s  ({result.samples} clips in {result.seconds:.1f} s)")
    names = list(rates)
    print(f"{'file loader speed-up with workers':<40} {rates[names[2]] / rates[names[1]]:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
