"""ToCo on class-tinted synthetic shapes: classification only, + PTC, + the segmentation head, against naive baselines.

Arms (same seed, same in-memory images; spec §7 tiny ViT, random init):

1. ``cls``: ``L_cls + L_cls^aux`` for ``--steps`` steps;
2. ``ptc``: the same plus ``--ptc-weight`` PTC from step ``--contrast-after``;
3. ``toco``: ``ptc`` continued ``--seg-steps`` with the segmentation term on PAR pseudo labels (and CTC with
   ``--ctc-weight``).

Prints and writes ``toco_demo.json`` (test mIoUs of the final CAM, the aux CAM, the pseudo labels and the seg head per
arm, the all-background and label-broadcast baselines, seconds) into a new ``<out>/run_NNN``; ``--bench`` adds one
ToCo training step against one plain classification step of the same ViT and batch.

    python scripts/toco_demo.py --out runs/toco                # ~2 min on 2 idle CPU cores (the slow test's run)
    python scripts/toco_demo.py --out runs/toco --bench --seeds 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEYS = ("test_cam_miou", "test_aux_cam_miou", "test_pseudo_miou", "test_miou")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="toco_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="parent folder: each run writes a new <out>/run_NNN")
    p.add_argument("--steps", type=int, default=120, help="training steps of the cls and ptc arms")
    p.add_argument("--seg-steps", type=int, default=50, help="further steps of the toco arm with the seg term")
    p.add_argument("--ptc-weight", type=float, default=0.5)
    p.add_argument("--ctc-weight", type=float, default=0.0, help="CTC weight of the toco arm (official 0.5)")
    p.add_argument("--seg-weight", type=float, default=0.5)
    p.add_argument("--contrast-after", type=int, default=40, help="PTC joins after this step")
    p.add_argument("--par-dilations", default="1,2,4,8", help="PAR rings (official 1,2,4,8,12,24 at 448 px)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--classes", type=int, default=3, help="shape classes (2 to 8)")
    p.add_argument("--background", choices=("gratings", "texture"), default="gratings",
                   help="image background (texture: SyntheticMultiShapes' default)")
    p.add_argument("--num-train", type=int, default=600)
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--seeds", type=int, default=1, help="repeats with seeds 0..N-1")
    p.add_argument("--bench", action="store_true", help="also time one ToCo step against one plain step")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if min(args.steps, args.seg_steps, args.batch_size, args.num_train, args.num_test, args.seeds) < 1:
        p.error("steps, seg-steps, batch-size, num-train, num-test and seeds must be positive")
    try:
        args.par_dilations = tuple(int(d) for d in args.par_dilations.split(","))
    except ValueError:
        p.error(f"--par-dilations must be comma-separated integers, got '{args.par_dilations}'")
    return args


def run_seed(args: argparse.Namespace, seed: int, out: Path) -> dict[str, Any]:
    """The three arms and the baselines for one seed."""
    from visionkit.core.arms import seed_arm
    from visionkit.methods.toco.demo import evaluate, naive_baselines, shapes_data, shapes_task, train_steps

    progress = not args.no_progress
    data = shapes_data(args.classes, 2, args.num_train, args.num_test, args.batch_size, seed, args.background)
    result: dict[str, Any] = {"seed": seed, **naive_baselines(data.dataset("test"), args.classes)}
    common = {"num_classes": args.classes, "lr": args.lr, "seg_after": 10**9, "ctc_weight": 0.0,
              "par_dilations": args.par_dilations}
    for arm, ptc in (("cls", 0.0), ("ptc", args.ptc_weight)):
        seed_arm(seed)
        task = shapes_task(ptc_weight=ptc, contrast_after=args.contrast_after, **common)
        seconds = train_steps(task, data, args.steps, out, f"{arm}_seed{seed}", progress)
        result[arm] = {**{k: v for k, v in evaluate(task, data).items() if k in KEYS}, "train_seconds": seconds}
    task.hparams.update(seg_after=-1, contrast_after=-1, seg_weight=args.seg_weight, ctc_weight=args.ctc_weight)
    seconds = train_steps(task, data, args.seg_steps, out, f"toco_seed{seed}", progress)
    result["toco"] = {**{k: v for k, v in evaluate(task, data).items() if k in KEYS}, "train_seconds": seconds}
    if args.bench:
        from visionkit.methods.toco.demo import benchmark_step

        task.hparams.update(ctc_weight=args.ctc_weight or 0.5)
        batch = next(iter(data.train_dataloader()))
        result["bench"] = benchmark_step(task, batch)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.errors import exit_on_user_error
    from visionkit.utils.runs import run_dir_or_nothing

    with exit_on_user_error("toco_demo"), run_dir_or_nothing(args.out) as out:
        results = [run_seed(args, seed, out) for seed in range(args.seeds)]
        (out / "toco_demo.json").write_text(json.dumps(results, indent=2))
    print(f"results in {out}")
    for r in results:
        print(f"seed {r['seed']}: baselines all-background {r['all_background']:.3f}, "
              f"label broadcast {r['label_broadcast']:.3f}")
        for arm in ("cls", "ptc", "toco"):
            row = r[arm]
            print(f"  {arm:<4} cam {row['test_cam_miou']:.3f}  aux_cam {row['test_aux_cam_miou']:.3f}  "
                  f"pseudo {row['test_pseudo_miou']:.3f}  seg {row['test_miou']:.3f}  ({row['train_seconds']:.0f} s)")
        if "bench" in r:
            b = r["bench"]
            print(f"  step: plain {b['plain'] * 1e3:.0f} ms, toco {b['toco'] * 1e3:.0f} ms ({b['ratio']:.2f}x); inside: "
                  f"cam {b['cam'] * 1e3:.0f} ms, pseudo labels {b['pseudo_labels'] * 1e3:.0f} ms, "
                  f"ctc views {b['ctc_views'] * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
