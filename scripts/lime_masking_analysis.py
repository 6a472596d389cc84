"""LIME masking analysis: explain images with LIME under several fills that share one perturbation matrix.

Layer masking receives the real keep mask of every LIME sample; grey, black, mean and blur paint
the hidden superpixels. Each image gets a PNG panel (input, then the top-k segments per fill),
and the run writes ``explanations.json`` (segment weights per fill), ``summary.json``/``.csv``
and prints a summary table: coverage and Jaccard of the top-k segments against the object mask
(where one is known), win %, and top-k ablation accuracy (lower = more faithful).

    python scripts/lime_masking_analysis.py                         # tiny CNN in assets/, 8 SyntheticShapes images
    python scripts/lime_masking_analysis.py skimage:astronaut skimage:coffee photos/  # files, folders, skimage photos
    python scripts/lime_masking_analysis.py --config configs/layer_masking/shapes_test_resnet.yaml \\
        --ckpt logs/LayerMaskingTask/version_0/checkpoints/last.ckpt --split test --num-images 20
    python scripts/lime_masking_analysis.py --backbone resnet50 --weights r50.safetensors --num-classes 1000 \\
        --normalize-input --image-size 224 skimage:chelsea

Every run writes a new folder ``<out>/run_NNN`` (default ``outputs/lime_masking``); nothing already written is replaced.
The outputs are built in a hidden temporary folder under ``<out>`` and renamed to ``run_NNN`` only once
complete, so a run that fails or is interrupted leaves no run folder behind.
Bad input (a missing file, an out-of-range option) stops with one line ``lime_masking_analysis: error: ...``
and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from visionkit.errors import exit_on_user_error

PROG = "lime_masking_analysis"
FILLS = ["layer", "grey", "black", "blur"]


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``<prog>: error: <message>`` (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        """Print one error line (no usage block) and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


#: Integer options and their smallest allowed value (``None`` values mean "not given").
INT_MIN = {"num_images": 1, "image_size": 8, "num_classes": 2, "n_segments": 2, "grid": 1, "num_samples": 2,
           "batch_size": 1, "top_k": 1, "seed": 0}
#: Float options: ``(smallest allowed value, whether the smallest value itself is allowed)``.
FLOAT_MIN = {"compactness": (0.0, False), "blur_sigma": (0.0, True)}
SEED_MAX = 2**32 - 1  # numpy's RandomState seed range


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_ranges(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One-line parser error for the first numeric option outside its range."""
    for dest, low in INT_MIN.items():
        value = getattr(args, dest)
        if value is not None and value < low:
            p.error(f"{_option(dest)} must be at least {low}, got {value}")
    if args.seed > SEED_MAX:
        p.error(f"--seed must be at most {SEED_MAX}, got {args.seed}")
    for dest, (low, inclusive) in FLOAT_MIN.items():
        value = getattr(args, dest)
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            p.error(f"{_option(dest)} must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (numeric options range-checked; errors are one line, exit code 2)."""
    p = _OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="*", help="image files, folders of images, or skimage:<name> photos; "
                   "none: the first --num-images items of --split")
    src = p.add_argument_group("model (default: --asset shapes_test_resnet)")
    src.add_argument("--asset", default=None, help="a shipped pretrained backbone in assets/")
    src.add_argument("--config", default=None, help="a visionkit YAML config (model and data are built from it)")
    src.add_argument("--ckpt", default=None, help="a Lightning checkpoint of the config's task (or, alone, of a "
                     "LayerMaskingTask / ClassificationTask)")
    src.add_argument("--backbone", default=None, help="a timm model name (with --weights, --num-classes)")
    src.add_argument("--weights", default=None, help="local weights for --backbone (.safetensors/.pth/.ckpt)")
    src.add_argument("--num-classes", type=int, default=None, help="classes of --backbone (at least 2)")
    src.add_argument("--normalize-input", action="store_true", help="apply the backbone's mean/std (--backbone only)")
    data = p.add_argument_group("images")
    data.add_argument("--split", default="val", choices=["train", "val", "test"], help="dataset split when no inputs")
    data.add_argument("--num-images", type=int, default=8, help="images taken from --split")
    data.add_argument("--image-size", type=int, default=None, help="resize file/photo inputs to this side, "
                      "at least 8 px (default: the model's training size)")
    lime = p.add_argument_group("LIME")
    lime.add_argument("--fills", nargs="+", default=FILLS, help="layer, layer_zero, layer_partial, grey, black, mean, blur")
    lime.add_argument("--segmentation", default="slic", choices=["slic", "quickshift", "grid"])
    lime.add_argument("--n-segments", type=int, default=40, help="SLIC segments (at least 2)")
    lime.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness (> 0)")
    lime.add_argument("--grid", type=int, default=4, help="cell side (px, at least 1) for --segmentation grid")
    lime.add_argument("--num-samples", type=int, default=1000, help="LIME perturbations per explanation (at least 2)")
    lime.add_argument("--batch-size", type=int, default=250, help="perturbations per model call (at least 1)")
    lime.add_argument("--top-k", type=int, default=5, help="k of the top-k metrics when no object mask is known "
                      "(at least 1)")
    lime.add_argument("--seed", type=int, default=0, help=f"seed of the shared perturbation matrix (0..{SEED_MAX})")
    lime.add_argument("--blur-sigma", type=float, default=2.0, help="sigma (px) of the blur fill (>= 0; 0 = no blur)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="outputs/lime_masking", help="parent folder of the run folders")
    out.add_argument("--device", default="cpu", help="torch device")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    check_ranges(p, args)
    chosen = [n for n in ("asset", "config", "backbone") if getattr(args, n)]
    if len(chosen) > 1:
        p.error(f"give one model source, got --{' and --'.join(chosen)}")
    if args.weights and not args.backbone:
        p.error("--weights needs --backbone")
    if args.backbone and args.num_classes is None:
        p.error("--backbone needs --num-classes")
    return args


def run(args: argparse.Namespace) -> Path:
    """Build, explain, write (see :func:`visionkit.methods.layer_masking.lime_run.run_analysis`); returns the run folder."""
    from visionkit.methods.layer_masking.lime_analysis import LimeSettings
    from visionkit.methods.layer_masking.lime_run import ImageSpec, ModelSpec, run_analysis

    pick = lambda cls: cls(**{f.name: getattr(args, f.name) for f in fields(cls)})  # noqa: E731
    settings = LimeSettings(fills=args.fills, num_samples=args.num_samples, batch_size=args.batch_size,
                            segmentation=args.segmentation, n_segments=args.n_segments, compactness=args.compactness,
                            grid=args.grid, top_k=args.top_k, seed=args.seed, blur_sigma=args.blur_sigma)
    return run_analysis(pick(ModelSpec), pick(ImageSpec), settings, args.out, args.device, not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on bad input, with one ``error:`` line)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a bad option (2)
        return int(exit_.code or 0)
    try:
        with exit_on_user_error(PROG, extra=(FileNotFoundError, FileExistsError, ValueError)):
            run(args)
    except SystemExit as exit_:
        return int(exit_.code)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spin-waiting on shared cores
    sys.exit(main())
