"""Re²TAL rewiring demo (spec A7): pretrain a tiny ResNet, rewire it, fine-tune it reversibly; then TAL end to end.

1. ``original``: a timm ResNet (stages of 4, 4, 1, 1 basic blocks) trained on scikit-learn digits at 16 px.
2. ``rewired``: its weights in the rewired network (``Re2TALClassificationTask``), tested as they are.
3. ``finetuned``: the rewired network fine-tuned ``--epochs`` with the reversible backward, against
   ``scratch``: the same rewired network from random weights, trained the same steps.
4. ``--tal`` (default): ``Re2TALTask`` on ``SyntheticTALDataModule``, the rewired backbone trained end to end
   (``e2e``) against its frozen features (``frozen``; ``--frozen-original``: also the original's) under the
   same head. Backbone: the shipped ``shapes_test_resnet`` (``--tal-backbone shapes``, another domain) or
   step 3's ``finetuned`` network (``digits``, pretrained on the very digits the TAL frames show).

Writes ``re2tal_demo.json`` and ``re2tal_demo.png`` under ``--out`` and prints the table.

    python scripts/re2tal_demo.py --out runs/re2tal      # ~2 min on 2 idle CPU cores
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

#: The tiny residual backbone of steps 1-3: identity-shortcut blocks 1-3 of ``layer1`` and ``layer2`` are reversible.
RESNET = {"backbone": "resnet18", "backbone_kwargs": {"layers": [4, 4, 1, 1], "channels": [16, 32, 32, 32]}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="re2tal_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="parent folder: each run writes a new <out>/run_NNN")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2, help="epochs of the rewired fine-tune and of the scratch arm")
    p.add_argument("--lr", type=float, default=3e-3, help="pretraining and scratch learning rate")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of the rewired fine-tune")
    p.add_argument("--tal", action=argparse.BooleanOptionalAction, default=True, help="run the TAL arms (step 4)")
    p.add_argument("--frozen-original", action="store_true", help="add a TAL arm on the frozen original backbone")
    p.add_argument("--tal-backbone", choices=("shapes", "digits"), default="shapes", help="TAL backbone (step 4)")
    p.add_argument("--tal-epochs", type=int, default=3)
    p.add_argument("--tal-frames", type=int, default=32, help="frames per TAL sequence (>= 12)")
    p.add_argument("--tal-train", type=int, default=128, help="TAL training sequences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if min(args.pretrain_epochs, args.epochs, args.tal_epochs, args.tal_train) < 1 or args.tal_frames < 12:
        p.error("epochs and --tal-train must be positive and --tal-frames at least 12")
    return args


def classification_rows(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Steps 1-3: one row per arm with its test accuracy."""
    from visionkit.core.arms import fit_and_test, seed_arm
    from visionkit.core.trainer import build_trainer
    from visionkit.data.datamodules import DigitsDataModule
    from visionkit.methods.re2tal import Re2TALClassificationTask
    from visionkit.tasks import ClassificationTask

    def data() -> DigitsDataModule:  # the TAL set's digit pools: 1197 / 300 / 300 images
        return DigitsDataModule(num_train=1197, num_val=300, num_test=300, image_size=16, batch_size=64, seed=args.seed)
    common, progress = {**RESNET, "num_classes": 10, "image_size": 16}, not args.no_progress
    seed_arm(args.seed)
    metrics, seconds = fit_and_test(ClassificationTask(**common, lr=args.lr, warmup_epochs=1.0), data(),
                                    args.pretrain_epochs, out, "original", progress)
    rows = [{"arm": "original", "test_acc": metrics["test_acc"], "epochs": args.pretrain_epochs, "train_seconds": seconds}]
    checkpoint = str(next((out / "original").glob("version_*/checkpoints/last.ckpt")))
    trainer = build_trainer(save_dir=str(out), name="rewired", enable_progress_bar=progress, enable_model_summary=False)
    rewired = trainer.test(Re2TALClassificationTask(**common, checkpoint_path=checkpoint), datamodule=data(), verbose=False)
    rows.append({"arm": "rewired", "test_acc": float(rewired[0]["test_acc"]), "epochs": 0})
    for arm, weights, lr, warmup in (("finetuned", checkpoint, args.finetune_lr, 0.0), ("scratch", None, args.lr, 1.0)):
        seed_arm(args.seed)
        task = Re2TALClassificationTask(**common, checkpoint_path=weights, lr=lr, warmup_epochs=warmup)
        metrics, seconds = fit_and_test(task, data(), args.epochs, out, arm, progress)
        rows.append({"arm": arm, "test_acc": metrics["test_acc"], "epochs": args.epochs, "train_seconds": seconds})
    return rows


def tal_rows(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Step 4: one row per TAL arm with its test mAP."""
    from visionkit.core.arms import fit_and_test, seed_arm
    from visionkit.data.datamodules import SyntheticTALDataModule
    from visionkit.methods.re2tal import Re2TALTask

    arms = {"e2e": {}, "frozen": {"freeze_backbone": True}}
    if args.frozen_original:
        arms["frozen_original"] = {"freeze_backbone": True, "rewire_backbone": False}
    weights = {"asset": "shapes_test_resnet"} if args.tal_backbone == "shapes" else {
        **RESNET, "checkpoint_path": str(next((out / "finetuned").glob("version_*/checkpoints/last.ckpt")))}
    rows: list[dict[str, Any]] = []
    for arm, kwargs in arms.items():
        seed_arm(args.seed)
        data = SyntheticTALDataModule(num_frames=args.tal_frames, max_length=min(20, args.tal_frames // 3 - 1), max_segments=2,
                                      num_train=args.tal_train, num_val=64, num_test=64, batch_size=8, seed=args.seed)
        task = Re2TALTask(**weights, num_classes=3, image_size=16, lr=1e-3, warmup_epochs=1.0, **kwargs)
        metrics, seconds = fit_and_test(task, data, args.tal_epochs, out, f"tal_{arm}", not args.no_progress)
        rows.append({"arm": arm, **{k: v for k, v in metrics.items() if k.startswith("test_map")},
                     "backbone": args.tal_backbone, "epochs": args.tal_epochs, "train_seconds": seconds})
    return rows


def plot(result: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Test accuracy of steps 1-3 and, with TAL rows, test mAP@0.5 and average mAP per arm."""
    from visionkit.utils.viz import pyplot, save_figure

    plt = pyplot()
    panels = [("classification", ("test_acc",), "digits, tiny ResNet: test accuracy"),
              ("tal", ("test_map@0.5", "test_map"), "synthetic TAL: test mAP")][: len(result)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (part, keys, title) in zip(axes[0], panels, strict=True):
        rows, width = result[part], 0.8 / len(keys)
        for k, key in enumerate(keys):
            xs = [i + (k - (len(keys) - 1) / 2) * width for i in range(len(rows))]
            ax.bar(xs, [r[key] for r in rows], width, label=key.removeprefix("test_"))
            for x, r in zip(xs, rows, strict=True):
                ax.text(x, r[key] + 0.02, f"{r[key]:.3f}", ha="center", fontsize=7)
        ax.set_xticks(range(len(rows)), [r["arm"] for r in rows])
        ax.set_ylim(0, 1.1)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.errors import exit_on_user_error
    from visionkit.utils.runs import new_run_dir

    with exit_on_user_error("re2tal_demo"):
        out = new_run_dir(args.out)
        try:
            result = {"classification": classification_rows(args, out)}
            if args.tal:
                result["tal"] = tal_rows(args, out)
            (out / "re2tal_demo.json").write_text(json.dumps(result, indent=2))
            plot(result, out / "re2tal_demo.png")
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # a failed run leaves no half-written folder
            raise
    print(f"results in {out}")
    for row in result["classification"]:
        print(f"{row['arm']:<10} {row['epochs']:>2} epochs  test_acc {row['test_acc']:.4f}")
    for row in result.get("tal", []):
        print(f"TAL {row['arm']:<15} {row['epochs']:>2} epochs  mAP@0.5 {row['test_map@0.5']:.4f}  mAP {row['test_map']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
