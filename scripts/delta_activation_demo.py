"""Delta Activation Layers on moving-digit clips: a plain baseline, then two fine-tuned arms side by side.

1. ``baseline``: ``VideoClassificationTask`` (timm ``test_resnet`` per frame) trained on moving digits.
2. ``dal_w0`` and ``dal``: the baseline with a Delta Activation Layer after every activation (same step
   initialisation), fine-tuned with sparsity weight 0 and ``--weight``.

Prints accuracy, temporal density (nonzero deltas / deltas, first frame excluded), MAC-weighted density
and the mean step per arm, and the baseline's plain activation density; writes ``delta_demo.json`` and
``delta_demo.png`` (density per layer of both arms) under ``--out``.

    python scripts/delta_activation_demo.py --out runs/delta      # ~7 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="delta_activation_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="parent folder: each run writes a new <out>/run_NNN")
    p.add_argument("--baseline-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of each delta arm")
    p.add_argument("--weight", type=float, default=2e-3, help="sparsity weight of the 'dal' arm")
    p.add_argument("--step-lr-scale", type=float, default=30.0, help="learning rate of the steps, as a multiple of lr")
    p.add_argument("--threshold", type=float, default=0.25, help="initial quantisation step of every layer")
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def run_demo(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Train the three arms; one row per arm."""
    import torch

    from visionkit.core.arms import fit_and_test, seed_arm
    from visionkit.data.datamodules import MovingDigitsDataModule
    from visionkit.methods.delta_activation import DeltaActivationTask, spatial_density
    from visionkit.tasks import VideoClassificationTask

    def data() -> MovingDigitsDataModule:
        return MovingDigitsDataModule(num_frames=args.frames, num_train=args.train_clips, num_val=600, num_test=600,
                                      batch_size=32, image_size=32, seed=args.seed)

    progress = not args.no_progress
    seed_arm(args.seed)
    baseline = VideoClassificationTask(backbone="test_resnet", num_classes=10, image_size=32, lr=3e-3, warmup_epochs=0.3)
    metrics, seconds = fit_and_test(baseline, data(), args.baseline_epochs, out, "baseline", progress)
    test_clips = data().dataset("test")
    frames = torch.cat([test_clips[i]["video"] for i in range(64)])
    rows = [{"arm": "baseline", "test_acc": metrics["test_acc"], "plain_density": spatial_density(baseline.model, frames),
             "train_seconds": seconds}]
    checkpoint = next((out / "baseline").glob("version_*/checkpoints/last.ckpt"))
    for arm, weight in (("dal_w0", 0.0), ("dal", args.weight)):
        seed_arm(args.seed)
        task = DeltaActivationTask(
            backbone="test_resnet", checkpoint_path=str(checkpoint), num_classes=10, image_size=32,
            sparsity_weight=weight, threshold_init=args.threshold, step_lr_scale=args.step_lr_scale, lr=1e-3, weight_decay=0.0, warmup_epochs=0.0,
        )
        metrics, seconds = fit_and_test(task, data(), args.epochs, out, arm, progress)
        steps = [float(layer.step().mean()) for layer in task.layers().values()]
        rows.append({"arm": arm, "sparsity_weight": weight, "test_acc": metrics["test_acc"],
                     "density": metrics["test_density"], "mac_density": metrics["test_mac_density"],
                     "layer_density": {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("test_density/")},
                     "mean_step": sum(steps) / len(steps), "train_seconds": seconds})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Density per layer of the two delta arms."""
    from visionkit.utils.viz import pyplot, save_figure

    plt = pyplot()
    arms = [r for r in rows if "layer_density" in r]
    names = list(arms[0]["layer_density"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 3.5))
    width = 0.4
    for k, row in enumerate(arms):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        ax.bar(xs, [row["layer_density"][n] for n in names], width, label=f"{row['arm']} (w={row['sparsity_weight']:g})")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("temporal density")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import shutil

    from visionkit.errors import exit_on_user_error
    from visionkit.utils.runs import new_run_dir

    with exit_on_user_error("delta_activation_demo"):
        out = new_run_dir(args.out)
        try:
            rows = run_demo(args, out)
            (out / "delta_demo.json").write_text(json.dumps(rows, indent=2))
            plot(rows, out / "delta_demo.png")
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # a failed run leaves no half-written folder
            raise
    print(f"results in {out}")
    base, w0, dal = rows
    print(f"baseline: test_acc {base['test_acc']:.4f}, plain activation density {base['plain_density']:.4f}")
    for row in (w0, dal):
        print(f"{row['arm']:<7} w={row['sparsity_weight']:<8g} test_acc {row['test_acc']:.4f}  density {row['density']:.4f}  "
              f"mac_density {row['mac_density']:.4f}  mean step {row['mean_step']:.4f}")
    print(f"density reduction (w=0 / w={dal['sparsity_weight']:g}): {w0['density'] / max(dal['density'], 1e-12):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
