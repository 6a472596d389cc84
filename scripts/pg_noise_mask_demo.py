"""Policy-gradient noise masks on SynthRad: heat, then fine-tune on the unseen concept, against the two controls.

Arms ``plain`` (clean CE), ``random`` (Beta(1, 1) cells, CE times log G^2), ``faithful`` (official policy and loss),
with ``--reinforce`` also ``reinforce`` (corrected): each pretrains ``--epochs`` on SynthRad's 12 classes, then is
fine-tuned ``--finetune-epochs`` (``ClassificationTask`` from its last checkpoint) on the 6 unseen classes,
``--shots`` per class; same seeds, data, SGD (constant classifier lr) and epochs. Prints a table (mean ± std over
``--seeds``); writes ``pg_demo.json``, ``pg_demo_masks.png`` (image | mask | masked, a row per heated arm) and
``pg_demo_policy.png`` (alpha, beta, mask mean and std per epoch) into a new ``<out>/run_NNN``.

    python scripts/pg_noise_mask_demo.py --out runs/pg            # ~5-10 min on 2 CPU cores
    python scripts/pg_noise_mask_demo.py --out runs/pg --seeds 3 --reinforce
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

COLUMNS = ("pretrain_acc", "noisy_acc", "unseen_acc", "mask_mean", "mask_std", "alpha", "beta")
QUICK = {"epochs": 1, "finetune_epochs": 1, "train_per_class": 1, "val_per_class": 1, "test_per_class": 1, "batch_size": 6}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="pg_noise_mask_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="parent folder: each run writes a new <out>/run_NNN")
    p.add_argument("--epochs", type=int, default=15, help="pretraining (heating) epochs E1 of every arm")
    p.add_argument("--finetune-epochs", type=int, default=15, help="fine-tuning epochs E2 on the unseen concept")
    p.add_argument("--lr", type=float, default=0.05, help="pretraining SGD lr (the policy's is a tenth)")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="fine-tuning SGD lr (linear warm-up over 70 %%)")
    p.add_argument("--train-per-class", type=int, default=150, help="pretraining images per class (12 classes)")
    p.add_argument("--val-per-class", type=int, default=50, help="validation images per class")
    p.add_argument("--test-per-class", type=int, default=None, help="test images per class (default 50; unseen 100)")
    p.add_argument("--shots", type=int, default=10, help="fine-tuning images per unseen class (6 classes)")
    p.add_argument("--batch-size", type=int, default=64, help="pretraining batch (fine-tuning: 16)")
    p.add_argument("--backbone", default="test_resnet", help="timm classifier")
    p.add_argument("--policy-trunk", default="test_resnet", help="timm policy trunk (official resnet10t)")
    p.add_argument("--grid", type=int, default=16, help="mask cells per side (blur: --kernel-size, --sigma)")
    p.add_argument("--kernel-size", type=int, default=7)
    p.add_argument("--sigma", type=float, default=3.0)
    p.add_argument("--seeds", type=int, default=1, help="repeats with seeds 0..N-1 (mean ± std)")
    p.add_argument("--reinforce", action="store_true", help="add the corrected-REINFORCE arm")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (1 epoch each, 12 images)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    vars(args).update(QUICK if args.quick else {})
    counts = (args.epochs, args.finetune_epochs, args.train_per_class, args.val_per_class, args.test_per_class or 1, args.shots)
    if min(*counts, args.seeds) < 1 or args.batch_size < 2:  # batch >= 2: the policy's BatchNorm1d heads
        p.error("epochs, finetune-epochs, train/val/test-per-class, shots and seeds must be positive, batch-size >= 2")
    return args


def run_seed(args: argparse.Namespace, seed: int, out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every arm for one seed: one row per arm, and per heated arm its mask panel and per-epoch history."""
    import torch

    from visionkit.core.arms import fit_and_test, seed_arm
    from visionkit.data.datamodules import SynthRadDataModule
    from visionkit.methods.pg_noise_mask import NoiseMaskTask, history_from_metrics
    from visionkit.tasks import ClassificationTask
    from visionkit.utils.runs import read_metrics

    common = {"backbone": args.backbone, "in_channels": 1, "image_size": 32, "normalize_input": True,
              "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4}
    data = {"val_per_class": args.val_per_class, "test_per_class": args.test_per_class, "image_size": 32, "seed": seed}
    heat = {"grid": args.grid, "kernel_size": args.kernel_size, "sigma": args.sigma, "policy_trunk": args.policy_trunk,
            "classifier_lr_step": args.epochs}  # StepLR never fires within the run: constant lr, as the plain arm's
    rows, extras, progress = [], {}, not args.no_progress
    for arm in ["plain", "random", "faithful"] + (["reinforce"] if args.reinforce else []):
        seed_arm(seed)
        pretrain = SynthRadDataModule(train_per_class=args.train_per_class, batch_size=args.batch_size, **data)
        task = (ClassificationTask(num_classes=12, lr=args.lr, scheduler="none", **common) if arm == "plain" else
                NoiseMaskTask(num_classes=12, lr=args.lr, estimator=arm, **heat, **common))
        metrics, _ = fit_and_test(task, pretrain, args.epochs, out, f"{arm}_seed{seed}", progress)
        (run,) = (out / f"{arm}_seed{seed}").glob("version_*")
        row = {"arm": arm, "seed": seed, "pretrain_acc": metrics["test_acc"], "noisy_acc": metrics.get("test_noisy_acc")}
        if arm != "plain":  # the last epoch's policy draws (training), and a few masks drawn in eval mode
            history = history_from_metrics(read_metrics(run))
            row.update({k: history[max(history)].get(f"train_{k}") for k in COLUMNS[3:]})
            items = [pretrain.dataset("test")[i] for i in range(4)]
            batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "label")}
            extras[arm] = {"history": history, "panel": task.eval().visualize(batch, None)["noise_mask"]}
        seed_arm(seed)
        unseen = SynthRadDataModule(task="unseen", shots=args.shots, batch_size=16, **data)
        finetune = ClassificationTask(num_classes=6, lr=args.finetune_lr, warmup_epochs=0.7 * args.finetune_epochs,
                                      checkpoint_path=str(run / "checkpoints" / "last.ckpt"), **common)
        metrics, _ = fit_and_test(finetune, unseen, args.finetune_epochs, out, f"{arm}_finetune_seed{seed}", progress)
        rows.append({**row, "unseen_acc": metrics["test_acc"]})
    return rows, extras


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm, the mean and standard deviation (0 for one seed) over seeds of every column it has."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        summary: dict[str, Any] = {"arm": arm, "seeds": sum(r["arm"] == arm for r in rows)}
        for key in COLUMNS:
            values = [r[key] for r in rows if r["arm"] == arm and r.get(key) is not None]
            if values:
                summary.update({key: statistics.fmean(values), f"{key}_std": statistics.stdev(values) if values[1:] else 0.0})
        out.append(summary)
    return out


def plot(extras: dict[str, Any], out: Path) -> None:
    """Mask samples (a row of image | mask | masked per heated arm) and the arms' training statistics per epoch."""
    import torch

    from visionkit.callbacks.images import save_grid
    from visionkit.methods.pg_noise_mask import policy_figure
    from visionkit.utils.viz import save_figure

    save_grid(torch.cat([e["panel"] for e in extras.values()]), out / "pg_demo_masks.png", nrow=4)  # a row per arm
    fig = policy_figure({arm: e["history"] for arm, e in extras.items()}, "training masks per epoch (last seed)", ("train",))
    save_figure(fig, out / "pg_demo_policy.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.errors import exit_on_user_error
    from visionkit.methods.pg_noise_mask import NoiseMasker
    from visionkit.utils.runs import new_run_dir

    with exit_on_user_error("pg_noise_mask_demo", extra=(FileExistsError,)):
        NoiseMasker(args.grid, 32, args.kernel_size, args.sigma, "random")  # a bad mask geometry fails before any run
        out = new_run_dir(args.out)
        try:
            rows, extras = [], {}
            for seed in range(args.seeds):
                seed_rows, extras = run_seed(args, seed, out)  # panels and curves: the last seed's
                rows += seed_rows
            summary, settings = summarise(rows), {k: v for k, v in vars(args).items() if k != "out"}
            (out / "pg_demo.json").write_text(json.dumps({"settings": settings, "summary": summary, "rows": rows}, indent=2))
            plot(extras, out)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # a failed run leaves no half-written folder
            raise
    print(f"results in {out}\n\n| arm | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1))
    for s in summary:
        print(f"| {s['arm']} | " + " | ".join(f"{s[k]:.4f} ± {s[k + '_std']:.4f}" if k in s else "—" for k in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
