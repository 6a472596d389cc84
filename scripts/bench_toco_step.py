"""One ToCo training step against one plain classification step of the same ViT and batch, side by side.

The issue's setting (:func:`visionkit.methods.toco.demo.benchmark`): the demo's CPU ViT (64 px, 8 px patches,
width 96, depth 4) on one batch of synthetic shapes, every ToCo term on (PTC 0.5; CTC 0.5 with 4 local crops of
16 px and a second global view; seg 0.5 on PAR pseudo labels, dilations 1, 2, 4, 8). ``plain`` is the ViT's own
classifier (multi-label soft margin), ``toco`` the task's training step, both forward + backward + AdamW step,
alternating, medians over ``--repeats``. ``cam`` (the no-grad multi-scale CAM), ``pseudo_labels`` (PAR) and
``ctc_views`` (second view and local crops through the encoder) say where the extra time goes. The ratio
toco / plain is reported against the 3x target; timings are never asserted.

    python scripts/bench_toco_step.py --out runs/toco_step                        # ~15 s on 1 thread
    python scripts/bench_toco_step.py --out runs/toco_step_voc --setting voc      # official step, ~10 min on CPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET = 3.0
PARTS = ("plain", "toco", "ratio", "cam", "pseudo_labels", "ctc_views")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_toco_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="folder of bench_toco_step.json (created)")
    p.add_argument("--setting", choices=("shapes", "voc"), default="shapes",
                   help="shapes: the CPU demo ViT at 64 px; voc: DeiT-B/16 at 448 px with the official terms")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: 16 shapes, 2 voc)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per part (median)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device of the model and batch")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 16 if args.setting == "shapes" else 2
    if min(args.batch_size, args.repeats, args.threads) < 1:
        p.error(f"batch-size, repeats and threads must be positive, got {args.batch_size}, {args.repeats} and "
                f"{args.threads}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out must be a folder, {args.out} is a file")
    import torch

    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as err:  # malformed, unknown or absent device
        p.error(f"--device {args.device!r} is not usable here: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    return args


def table(result: dict) -> str:
    """Markdown table of the figures (milliseconds; the ratio as a multiple)."""
    head = [f"{k} ms" if k != "ratio" else "toco / plain" for k in PARTS]
    cells = [f"{result[k]:.2f}x" if k == "ratio" else f"{1e3 * result[k]:.1f}" for k in PARTS]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(PARTS), "| " + " | ".join(cells) + " |"])


def main(argv: list[str] | None = None) -> int:
    """Print the table and the verdict, write the JSON; returns 0."""
    args = parse_args(argv)
    import torch

    from visionkit.errors import exit_on_user_error
    from visionkit.methods.toco.demo import benchmark

    torch.set_num_threads(args.threads)
    with exit_on_user_error("bench_toco_step"):
        result = benchmark(args.batch_size, args.repeats, args.device, args.seed, args.setting)
    s = result["setting"]
    title = (f"ToCo step vs plain step ({s['setting']}, {s['backbone']}): batch {s['batch_size']} x {s['image_size']} "
             f"px, {s['device']}, {s['threads']} thread(s), median of {s['repeats']}")
    print(title)
    print(table(result))
    verdict = "met" if result["ratio"] <= TARGET else "not met"
    print(f"\ntarget <= {TARGET:g}x: {verdict}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_toco_step.json"
    path.write_text(json.dumps({**result, "target": TARGET, "target_met": verdict == "met"}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
