"""Arms trained side by side: each one seeded, trained, tested and measured the same way.

An *arm* is one way of adapting a model (linear probe, full fine-tuning, LoRA, a side network,
...), given as a zero-argument builder that returns a visionkit task. :func:`run_arms` runs every
arm on fresh copies of the same data and returns one row per arm (test metrics, parameter
counts, the memory of one training step, training seconds); :mod:`visionkit.utils.arm_report`
prints and writes the rows. Which arms and which learning rates is the caller's experiment table
(``scripts/``), never this module's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from visionkit.errors import VisionkitError

__all__ = ["ArmError", "arm_builders", "arm_memory", "fit_and_test", "run_arms", "seed_arm"]

#: ``() -> task``: builds one arm's task (a fresh, untrained one on each call).
TaskBuilder = Callable[[], Any]


class ArmError(VisionkitError, ValueError):
    """An arm selection or run setting that cannot be used (one line, naming it)."""


def seed_arm(seed: int) -> None:
    """Seed Python, NumPy, torch and the dataloader workers (Lightning's ``seed_everything``)."""
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True, verbose=False)


def arm_memory(task: Any, batch: dict[str, Any]) -> dict[str, float]:
    """Bytes of one training step of a copy of ``task`` on ``batch`` (fresh AdamW; ``task`` is untouched).

    Returns ``{"activation_bytes", "total_bytes"}`` (:func:`visionkit.memory.measure_training_step`);
    a task with nothing trainable (zero-shot) holds only its weights: 0 activation bytes.
    """
    from visionkit.memory import measure_training_step, state_bytes

    probe = copy.deepcopy(task)
    probe.train()
    params = [p for p in probe.parameters() if p.requires_grad]
    if not params:
        return {"activation_bytes": 0, "total_bytes": state_bytes(probe).total}
    optimizer = torch.optim.AdamW(params, lr=1e-12)
    report = measure_training_step(probe, lambda: probe.compute_loss(batch, "train")["loss"], optimizer)
    return {"activation_bytes": report.activation_bytes, "total_bytes": report.total_bytes}


def fit_and_test(task: Any, datamodule: Any, epochs: int, out_dir: str | Path, name: str,
                 progress: bool = True) -> tuple[dict[str, float], float]:
    """Train ``task`` for ``epochs`` (skipped when nothing is trainable) and test its last weights.

    The Lightning logs go to ``<out_dir>/<name>/version_N``. Returns the test metrics and the
    training time in seconds.
    """
    from visionkit.core.trainer import build_trainer

    trainer = build_trainer(
        save_dir=str(out_dir), name=name, monitor=task.monitor, mode=task.mode, max_epochs=epochs,
        enable_progress_bar=progress, enable_model_summary=False, deterministic=True,
    )
    start = time.perf_counter()
    if task.parameter_report().trainable:
        trainer.fit(task, datamodule=datamodule)
    seconds = time.perf_counter() - start
    metrics = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}, seconds


def run_arms(
    arms: Mapping[str, TaskBuilder],
    make_data: Callable[[], Any],
    epochs: int,
    seed: int,
    out_dir: str | Path,
    reference: str | TaskBuilder,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Seed, build, measure, train and test each arm in turn; one row per arm, in order.

    Every arm gets ``seed``, a fresh datamodule from ``make_data`` and its first training batch
    for the memory step. ``reference`` (an arm name, or a builder measured but never trained) is
    the denominator of ``activation_bytes_ratio`` and ``total_bytes_ratio``.
    """
    rows = []
    batch = None
    for name, build in arms.items():
        seed_arm(seed)
        datamodule = make_data()
        task = build()
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        memory = arm_memory(task, batch)
        metrics, seconds = fit_and_test(task, datamodule, epochs, out_dir, name, progress)
        count = task.parameter_report()
        rows.append({
            "arm": name, "epochs": epochs, "lr": float(task.hparams.lr), **metrics,
            "trainable_params": count.trainable, "all_params": count.total, **memory, "train_seconds": seconds,
        })
    if callable(reference):
        seed_arm(seed)
        ref = arm_memory(reference(), batch)
    else:
        ref = next((r for r in rows if r["arm"] == reference), None)
    for row in rows:
        for key in ("activation_bytes", "total_bytes"):
            row[f"{key}_ratio"] = row[key] / ref[key] if ref and ref[key] else float("nan")
        row["reference_bytes"] = {k: ref[k] for k in ("activation_bytes", "total_bytes")} if ref else None
    return rows


def arm_builders(table: Mapping[str, tuple[str, dict[str, Any]]], arms: Sequence[str], **common: Any) -> dict[str, TaskBuilder]:
    """``arm -> () -> task`` for the chosen ``arms`` of ``table`` (``arm -> (task class path, kwargs)``).

    Each task gets ``common`` (backbone, image size, ...) and its own row's kwargs.

    Raises:
        ArmError: an arm that is not in ``table``.
    """
    from visionkit.core.trainer import import_class

    unknown = [a for a in arms if a not in table]
    if unknown:
        raise ArmError(f"unknown arm(s) {unknown}; choose from {list(table)}")

    def builder(arm: str) -> TaskBuilder:
        path, kwargs = table[arm]
        return lambda: import_class(path)(**common, **kwargs)

    return {a: builder(a) for a in arms}

