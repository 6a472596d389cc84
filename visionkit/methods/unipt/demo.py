"""UniPT's offline transfer demos: every arm trained side by side, with accuracy and memory.

* :func:`classification_transfer`: the tiny ViT pretrained on SyntheticShapes
  (``assets/shapes_test_vit.safetensors``) transferred to scikit-learn's digits: linear probe,
  full fine-tuning, LoRA and UniPT.
* :func:`retrieval_transfer`: the tiny open_clip model pretrained contrastively on captions that
  name colour and shape (``assets/clip_shapes_tiny.safetensors``) transferred to captions that
  also name the position: frozen zero-shot, projection-only tuning and UniPT.

Both return one row per arm (test metrics, trainable parameters, training memory of one step at
the demo's batch size) and write ``<out_dir>/<name>.json`` and ``<name>.png``.
``scripts/unipt_transfer.py`` is the command line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

MIB = 2**20


def _seed(seed: int) -> None:
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True, verbose=False)


def _memory(task: Any, batch: dict[str, Any]) -> dict[str, float]:
    """Activation, state and total bytes of one training step of ``task`` on ``batch`` (fresh optimizer)."""
    import copy

    from visionkit.memory import measure_training_step, state_bytes

    probe = copy.deepcopy(task)
    probe.train()
    params = [p for p in probe.parameters() if p.requires_grad]
    if not params:  # nothing trains (zero-shot): only the weights are held
        return {"activation_bytes": 0, "total_bytes": state_bytes(probe).total}
    optimizer = torch.optim.AdamW(params, lr=1e-12)
    report = measure_training_step(probe, lambda: probe.compute_loss(batch, "train")["loss"], optimizer)
    return {"activation_bytes": report.activation_bytes, "total_bytes": report.total_bytes}


def _fit_and_test(task: Any, datamodule: Any, epochs: int, out_dir: Path, name: str, monitor: str, mode: str,
                  progress: bool) -> tuple[dict[str, float], float]:
    """Train (when anything is trainable) and test the last weights; returns test metrics and seconds."""
    from visionkit.core.trainer import build_trainer

    trainer = build_trainer(
        save_dir=str(out_dir), name=name, monitor=monitor, mode=mode, max_epochs=epochs,
        enable_progress_bar=progress, enable_model_summary=False, deterministic=True,
    )
    start = time.perf_counter()
    if task.parameter_report().trainable:
        trainer.fit(task, datamodule=datamodule)
    seconds = time.perf_counter() - start
    metrics = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}, seconds


def _run_arms(
    arms: dict[str, Callable[[], Any]],
    make_data: Callable[[], Any],
    epochs: int,
    seed: int,
    out_dir: Path,
    reference: str | Callable[[], Any],
    progress: bool,
) -> list[dict[str, Any]]:
    """Train and test each arm; ``reference`` (an arm name, or a builder measured but not trained)
    is the denominator of the memory ratios."""
    rows = []
    batch = None
    for name, build in arms.items():
        _seed(seed)
        datamodule = make_data()
        task = build()
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        memory = _memory(task, batch)
        metrics, seconds = _fit_and_test(task, datamodule, epochs, out_dir, name, task.monitor, task.mode, progress)
        count = task.parameter_report()
        rows.append({
            "arm": name, "epochs": epochs, "lr": float(task.hparams.lr), **metrics,
            "trainable_params": count.trainable, "all_params": count.total, **memory, "train_seconds": seconds,
        })
    if callable(reference):
        _seed(seed)
        ref = _memory(reference(), batch)
    else:
        ref = next((r for r in rows if r["arm"] == reference), None)
    for row in rows:
        for key in ("activation_bytes", "total_bytes"):
            row[f"{key}_ratio"] = row[key] / ref[key] if ref and ref[key] else float("nan")
        row["reference_bytes"] = {k: ref[k] for k in ("activation_bytes", "total_bytes")} if ref else None
    return rows


def _arm_builders(table: dict[str, tuple[str, dict[str, Any]]], arms: Sequence[str], **common: Any) -> dict[str, Callable[[], Any]]:
    """``arm -> () -> task`` for the chosen arms of ``table`` (``arm -> (class path, kwargs)``)."""
    from visionkit.core.trainer import import_class

    unknown = [a for a in arms if a not in table]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {list(table)}")

    def builder(arm: str) -> Callable[[], Any]:
        path, kwargs = table[arm]
        return lambda: import_class(path)(**common, **kwargs)

    return {a: builder(a) for a in arms}


def _write(rows: list[dict[str, Any]], out_dir: Path, name: str, metric: str, metric_label: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(rows, indent=2))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    arms = [r["arm"] for r in rows]
    panels = [
        (metric, metric_label),
        ("activation_bytes", "activation MiB (one step)"),
        ("trainable_params", "trainable parameters"),
    ]
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [r[key] / MIB if key.endswith("_bytes") else r[key] for r in rows]
        bars = ax.bar(arms, values, color=["tab:orange" if a.startswith("unipt") else "tab:grey" for a in arms])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=120)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]], metrics: Sequence[str]) -> str:
    """A markdown table of the arms."""
    head = ["arm", "epochs", "lr", *metrics, "trainable params", "activations MiB", "ratio", "total MiB", "ratio", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["arm"], str(r["epochs"]), f"{r['lr']:g}", *[f"{r.get(m, float('nan')):.3f}" for m in metrics],
                 f"{r['trainable_params']:,d}", f"{r['activation_bytes'] / MIB:.1f}", f"{r['activation_bytes_ratio']:.3f}",
                 f"{r['total_bytes'] / MIB:.1f}", f"{r['total_bytes_ratio']:.3f}", f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- classification -------------------------------------------------------------------------------------
#: arm -> (task class path, task arguments besides the backbone), learning rates picked per arm.
CLASSIFICATION_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": ("visionkit.tasks.ClassificationTask", {"finetune": "linear", "lr": 1.0e-2}),
    "full": ("visionkit.tasks.ClassificationTask", {"finetune": "full", "lr": 1.0e-3}),
    "lora": ("visionkit.tasks.ClassificationTask", {"finetune": "lora", "lr": 3.0e-3}),
    "unipt": ("visionkit.methods.unipt.UniPTTask", {"lr": 3.0e-3}),
}


def classification_transfer(
    arms: Sequence[str] = tuple(CLASSIFICATION_ARMS),
    epochs: int = 15,
    seed: int = 0,
    out_dir: str | Path = "outputs/unipt_transfer",
    asset: str = "shapes_test_vit",
    num_train: int = 500,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Transfer the shapes-pretrained tiny ViT to digits with each arm; returns one row per arm.

    Data: :class:`~visionkit.data.datamodules.DigitsDataModule` at 32 px, ``num_train`` training
    images, 300 validation and 297 test images (a fixed split). Every arm starts from the same
    asset weights, sees the same batches and is tested after its last epoch.
    """
    from visionkit.data.datamodules import DigitsDataModule

    def make_data():
        return DigitsDataModule(num_train=num_train, num_val=300, num_test=297, batch_size=64, image_size=32, seed=seed)

    out = Path(out_dir)
    builders = _arm_builders(CLASSIFICATION_ARMS, arms, asset=asset, num_classes=10, image_size=32, warmup_epochs=1.0)
    rows = _run_arms(builders, make_data, epochs, seed, out, "full", progress)
    _write(rows, out, "classification", "test_acc", "test accuracy",
           f"{asset} -> digits ({num_train} train images, {epochs} epochs, seed {seed})")
    return rows


# ---- retrieval ------------------------------------------------------------------------------------------
#: arm -> (task class path, task arguments besides the model).
RETRIEVAL_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "zero_shot": ("visionkit.tasks.RetrievalTask", {"tune": "frozen"}),
    "projection": ("visionkit.tasks.RetrievalTask", {"tune": "projection", "lr": 3.0e-3}),
    "unipt": ("visionkit.methods.unipt.UniPTRetrievalTask", {"variant": "token", "reduction": 1, "lr": 3.0e-3}),
    "unipt_global": ("visionkit.methods.unipt.UniPTRetrievalTask", {"variant": "global", "reduction": 1, "lr": 3.0e-3}),
    "full": ("visionkit.tasks.RetrievalTask", {"tune": "full", "lr": 1.0e-3}),
}
#: arms run by default (``full`` and ``unipt_global`` on request; full fine-tuning's memory is
#: always measured, as the reference of the ratios).
DEFAULT_RETRIEVAL_ARMS = ("zero_shot", "projection", "unipt")
#: the shift: pretraining captions name colour and shape; the target's also name the position.
TARGET_DESCRIBE = ("colour", "shape", "position")


def retrieval_transfer(
    arms: Sequence[str] = DEFAULT_RETRIEVAL_ARMS,
    epochs: int = 30,
    seed: int = 0,
    out_dir: str | Path = "outputs/unipt_transfer",
    asset: str = "clip_shapes_tiny",
    num_train: int = 4000,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Transfer the tiny caption-pretrained open_clip model to position-aware captions, per arm.

    Data: :class:`~visionkit.data.datamodules.SyntheticCaptionsDataModule` with captions that
    state colour, shape **and position** (the asset only ever read colour and shape), 32 px,
    ``num_train`` training pairs, batches of 64, and 500 validation / 500 test pairs (one caption
    per image, so R@1 is over 500 candidates). Memory ratios are to full fine-tuning, measured
    for one step whether or not the ``full`` arm is trained.
    """
    from visionkit.data.datamodules import SyntheticCaptionsDataModule

    def make_data():
        return SyntheticCaptionsDataModule(
            describe=list(TARGET_DESCRIBE), num_train=num_train, num_val=500, num_test=500, batch_size=64,
            image_size=32, seed=seed,
        )

    out = Path(out_dir)
    builders = _arm_builders(RETRIEVAL_ARMS, arms, asset=asset, image_size=32, warmup_epochs=1.0)
    reference = _arm_builders(RETRIEVAL_ARMS, ["full"], asset=asset, image_size=32)["full"]
    rows = _run_arms(builders, make_data, epochs, seed, out, reference, progress)
    _write(rows, out, "retrieval", "test_rsum", "test rsum (R@1+5+10, both ways)",
           f"{asset} -> captions with positions ({num_train} pairs, {epochs} epochs, seed {seed})")
    return rows
