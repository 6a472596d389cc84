"""Transfer demos run from the command line: several demos of one method, each a table of arms run side by side.

A script (``scripts/<method>_transfer.py``) holds the experiment (its arm tables, its datasets) and hands
:func:`run_demos` one :class:`TransferDemo` per demo; this module parses and checks the shared options
(``--demo``, ``--arms``, ``--epochs``, ``--num-train``, ``--seed``, ``--out``, ``--no-progress``), runs the
chosen arms into one fresh ``run_NNN`` folder (removed again if the run fails) and prints each table.
:func:`digits_transfer` is the classification demo every side-tuning method shares.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionkit.core.arms import ArmError, arm_builders, run_arms

__all__ = ["TransferDemo", "check_positive", "chosen_arms", "demo_parser", "digits_transfer", "run_demos"]

#: an arm table: arm -> (task class path, task arguments).
ArmTable = Mapping[str, tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class TransferDemo:
    """One demo: its arm table, ``run(out_dir, arms=..., seed=..., progress=..., [epochs=..., num_train=...])``
    returning one row per arm, the metrics its table prints, and the arms run when ``--arms`` is not given."""

    arms: ArmTable
    run: Callable[..., list[dict[str, Any]]]
    metrics: Sequence[str]
    default_arms: Sequence[str] | None = None


def digits_transfer(
    table: ArmTable,
    arms: Sequence[str],
    out_dir: str | Path,
    *,
    epochs: int = 15,
    seed: int = 0,
    asset: str = "shapes_test_vit",
    num_train: int = 500,
    reference: str = "full",
    highlight: str = "",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The chosen ``arms`` of ``table`` moving a shipped 32 px backbone ``asset`` to scikit-learn's digits.

    Digits upsampled to 32 px, ``num_train`` / 300 / 297 images, batches of 64, the same asset weights for
    every arm, tested after the last epoch. Memory ratios are to ``table[reference]``, measured for one step
    whether or not that arm is trained. Writes ``classification.json``/``.png`` into ``out_dir``; one row per arm.
    """
    from visionkit.data.datamodules import DigitsDataModule
    from visionkit.utils.arm_report import write_arm_report

    def make_data() -> DigitsDataModule:
        return DigitsDataModule(num_train=num_train, num_val=300, num_test=297, batch_size=64, image_size=32, seed=seed)

    common = {"asset": asset, "num_classes": 10, "image_size": 32, "warmup_epochs": 1.0}
    builders = arm_builders(table, arms, **common)
    rows = run_arms(builders, make_data, epochs, seed, out_dir, arm_builders(table, [reference], **common)[reference], progress)
    title = f"{asset} -> digits ({num_train} train images, {epochs} epochs, seed {seed})"
    write_arm_report(rows, out_dir, "classification", "test_acc", "test accuracy", title, highlight=highlight)
    return rows


def chosen_arms(text: str | None, tables: Mapping[str, Mapping[str, Any]]) -> list[str] | None:
    """The arms of a comma-separated ``--arms`` value (``None``: not given), each checked against ``tables``.

    Raises:
        ArmError: an empty list, or an arm in none of ``tables`` (demo name -> arm table).
    """
    if text is None:
        return None
    arms = [a.strip() for a in text.split(",") if a.strip()]
    valid = {a for table in tables.values() for a in table}
    unknown = [a for a in arms if a not in valid]
    if unknown or not arms:
        raise ArmError(f"--arms {unknown or text!r} not known; choose from {sorted(valid)}")
    return arms


def check_positive(**flags: int | None) -> None:
    """Raise :class:`ArmError` for a given (not ``None``) count below 1; keyword ``num_train`` names ``--num-train``."""
    for name, value in flags.items():
        if value is not None and value < 1:
            raise ArmError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def demo_parser(prog: str, description: str, demos: Mapping[str, TransferDemo], out: str) -> argparse.ArgumentParser:
    """The shared options of a transfer script (``--demo`` chooses one of ``demos`` or ``both``/``all``)."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", choices=(*demos, "both" if len(demos) == 2 else "all"), default="both" if len(demos) == 2 else "all")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: the demo's default arms)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per arm (default: the demo's)")
    p.add_argument("--num-train", type=int, default=None, help="training samples (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help="parent of the run_NNN folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def run_demos(args: argparse.Namespace, demos: Mapping[str, TransferDemo]) -> Path:
    """Check the options, then run each chosen demo into one fresh run folder and print its table; returns the folder."""
    from visionkit.utils.arm_report import markdown_table
    from visionkit.utils.runs import run_dir_or_nothing

    chosen_demos = list(demos) if args.demo in ("both", "all") else [args.demo]
    arms = chosen_arms(args.arms, {d: demos[d].arms for d in chosen_demos})
    check_positive(epochs=args.epochs, num_train=args.num_train)
    with run_dir_or_nothing(args.out) as out:
        for name in chosen_demos:
            demo = demos[name]
            chosen = [a for a in (arms or demo.default_arms or demo.arms) if a in demo.arms]
            if not chosen:
                continue
            kwargs = {k: v for k, v in (("epochs", args.epochs), ("num_train", args.num_train)) if v}
            rows = demo.run(out, arms=chosen, seed=args.seed, progress=not args.no_progress, **kwargs)
            print(f"\n**{name}** ({out})\n\n{markdown_table(rows, demo.metrics)}\n")
    print(f"wrote {out}")
    return out
