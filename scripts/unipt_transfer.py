"""UniPT's offline transfer demos: every arm trained side by side, with accuracy and memory.

    python scripts/unipt_transfer.py                          # both demos
    python scripts/unipt_transfer.py --demo classification --epochs 15
    python scripts/unipt_transfer.py --demo retrieval --arms zero_shot,unipt

Classification: the tiny ViT pretrained on SyntheticShapes (``assets/shapes_test_vit``) moved
to digits by a linear probe, full fine-tuning, LoRA and UniPT. Retrieval: the tiny open_clip
model pretrained on colour+shape captions (``assets/clip_shapes_tiny``) moved to captions that
also state the position: frozen zero-shot, projection-only and UniPT (``--arms`` adds ``full``
fine-tuning and ``unipt_global``, the CLIP4Clip variant).

Each run writes a new ``<out>/run_NNN`` folder (nothing is overwritten) holding one Lightning
log folder per arm, ``<demo>.json`` and ``<demo>.png``, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys

DEMOS = ("classification", "retrieval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", choices=(*DEMOS, "both"), default="both")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: every arm of the demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per arm (default: classification 15, retrieval 30)")
    p.add_argument("--num-train", type=int, default=None, help="training images/pairs (default: 500 / 4000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/unipt_transfer", help="parent of the run_NNN folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"unipt_transfer: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.methods.unipt.demo import (
        CLASSIFICATION_ARMS,
        DEFAULT_RETRIEVAL_ARMS,
        RETRIEVAL_ARMS,
        classification_transfer,
        markdown,
        retrieval_transfer,
    )
    from visionkit.utils.runs import check_out, new_run_dir

    demos = DEMOS if args.demo == "both" else (args.demo,)
    known = {"classification": CLASSIFICATION_ARMS, "retrieval": RETRIEVAL_ARMS}
    defaults = {"classification": tuple(CLASSIFICATION_ARMS), "retrieval": DEFAULT_RETRIEVAL_ARMS}
    if args.arms is not None:
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        valid = {a for d in demos for a in known[d]}
        unknown = [a for a in arms if a not in valid]
        if unknown or not arms:
            return fail(f"--arms {unknown or args.arms!r} not known; choose from {sorted(valid)}")
    for flag, value in (("--epochs", args.epochs), ("--num-train", args.num_train)):
        if value is not None and value < 1:
            return fail(f"{flag} must be a positive integer, got {value}")
    try:
        check_out(args.out)
    except FileExistsError as err:
        return fail(str(err))
    out = new_run_dir(args.out)
    for demo in demos:
        chosen = [a for a in (arms if args.arms else defaults[demo]) if a in known[demo]]
        if not chosen:
            continue
        run = classification_transfer if demo == "classification" else retrieval_transfer
        kwargs = {"epochs": args.epochs} if args.epochs else {}
        if args.num_train:
            kwargs["num_train"] = args.num_train
        rows = run(arms=chosen, seed=args.seed, out_dir=out, progress=not args.no_progress, **kwargs)
        metrics = ["test_acc"] if demo == "classification" else ["test_i2t_r1", "test_t2i_r1", "test_rsum"]
        print(f"\n**{demo}** ({out})\n\n{markdown(rows, metrics)}\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
