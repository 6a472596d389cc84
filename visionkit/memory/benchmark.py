"""Training memory of fine-tuning methods side by side: cases, runner, ratios, table and bar chart.

A :class:`BenchmarkCase` names a visionkit task class and its own arguments (``finetune="lora"``,
``reduction=2``, ...); :func:`run_benchmark` builds each case on the same backbone, image size
and batch, trains ``warmup`` unmeasured steps and ``steps`` measured ones with
:func:`~visionkit.memory.meter.measure_training_step`, and returns one row per case with its
ratios to the reference case (``"full"``). Which cases to compare is the caller's table
(``scripts/bench_memory.py``); nothing registers itself on import.

All sizes are in bytes unless a name ends in ``_mib`` (MiB = 2**20 bytes); times in seconds.
"""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.errors import VisionkitError
from visionkit.memory.meter import MIB, measure_training_step
from visionkit.utils.viz import pyplot, save_figure

__all__ = [
    "COLUMNS",
    "REFERENCE",
    "BenchmarkCase",
    "BenchmarkConfig",
    "BenchmarkError",
    "add_ratios",
    "bar_chart",
    "build_task",
    "check_backbone",
    "make_batch",
    "markdown_table",
    "measure_overhead",
    "overhead_line",
    "run_benchmark",
    "run_case",
    "run_metadata",
    "select_cases",
    "task_case",
    "title",
]

#: The case every ratio divides by; run first even when not asked for.
REFERENCE = "full"
#: ``(row key, table label)`` of the compared quantities, in table and chart order.
COLUMNS = (
    ("trainable_params", "trainable params"),
    ("activation_bytes", "activations MiB"),
    ("total_bytes", "total MiB"),
    ("step_time_s", "step s"),
)

#: ``(model, loss_fn(batch) -> scalar loss, optimizer)``; ``batch`` is ``{"image": (B, C, H, W), "label": (B,)}``.
Case = tuple[nn.Module, Callable[[dict[str, Tensor]], Tensor], torch.optim.Optimizer]


class BenchmarkError(VisionkitError, ValueError):
    """A bad benchmark input: an unknown case name or backbone, a non-positive size, a missing device."""


@dataclass(frozen=True)
class BenchmarkCase:
    """One row of the benchmark: a visionkit task class and the arguments that make it this method.

    Args:
        task: dotted path of a ``VisionTask`` classifier (``"visionkit.tasks.ClassificationTask"``).
        kwargs: the task's own arguments; they override the run's ``backbone``, ``backbone_kwargs``,
            ``num_classes``, ``image_size`` and ``scheduler="none"``.
    """

    task: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What every case of one benchmark shares: backbone, input, batch, device and step counts."""

    backbone: str
    image_size: int = 224
    batch_size: int = 8
    num_classes: int = 10
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fused_attn: bool = False
    warmup: int = 1
    steps: int = 1
    overhead_steps: int = 0
    device: str = "cpu"
    seed: int = 0


# ---- cases ------------------------------------------------------------------------------------------------
def select_cases(cases: Mapping[str, BenchmarkCase], names: Sequence[str] | None = None) -> list[str]:
    """Names of the cases to run, in order: ``names`` (every case when ``None``), the reference first if absent.

    Raises:
        BenchmarkError: a name is not in ``cases``, or the reference is missing from ``cases``.
    """
    chosen = list(cases) if names is None else list(names)
    unknown = [n for n in chosen if n not in cases]
    if unknown:
        raise BenchmarkError(f"unknown method(s) {unknown}; known: {list(cases)}")
    if REFERENCE not in chosen:
        if REFERENCE not in cases:
            raise BenchmarkError(f"the reference case '{REFERENCE}' is missing; known: {list(cases)}")
        chosen.insert(0, REFERENCE)
    return chosen


def task_case(task: Any) -> Case:
    """``(model, loss_fn, optimizer)`` of a visionkit ``VisionTask`` in training mode (its own trainable-only optimizer)."""
    task.train()
    optimizer = task.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]

    def loss_fn(batch: dict[str, Tensor]) -> Tensor:
        return task.compute_loss(batch, "train")["loss"]

    return task, loss_fn, optimizer


def build_task(case: BenchmarkCase, config: BenchmarkConfig) -> Any:
    """The task of ``case`` on ``config``'s backbone, classes and image size (random init, no scheduler)."""
    from visionkit.core.trainer import import_class

    cls = import_class(case.task)
    run_args = {
        "backbone": config.backbone,
        "backbone_kwargs": dict(config.backbone_kwargs),
        "num_classes": config.num_classes,
        "image_size": config.image_size,
        "scheduler": "none",
    }
    return cls(**(run_args | dict(case.kwargs)))


def check_backbone(config: BenchmarkConfig) -> None:
    """Refuse, before building anything, a backbone timm does not know, bad sizes or a missing CUDA device.

    Raises:
        BenchmarkError: bad sizes or a missing CUDA device; BackboneError: an unknown timm name (one line each).
    """
    from visionkit.backbones.factory import OPEN_CLIP_PREFIX, check_timm_name

    if config.image_size < 1 or config.batch_size < 1:
        raise BenchmarkError("--image-size and --batch-size must be positive")
    if not config.backbone.startswith(OPEN_CLIP_PREFIX):
        check_timm_name(config.backbone)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda requested but CUDA is not available")


# ---- measuring ----------------------------------------------------------------------------------------------
def make_batch(batch_size: int, image_size: int, num_classes: int, seed: int, in_chans: int = 3) -> dict[str, Tensor]:
    """Random ``{"image": (B, C, H, W) float32, "label": (B,) int64}`` from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(batch_size, in_chans, image_size, image_size, generator=gen),
        "label": torch.randint(0, num_classes, (batch_size,), generator=gen),
    }


def run_case(name: str, case: BenchmarkCase, config: BenchmarkConfig) -> dict[str, Any]:
    """One row: :meth:`MemoryReport.to_dict` of the last measured step, the median step time, ``method``.

    The reference case also gets ``meter_overhead`` (:func:`measure_overhead`) when
    ``config.overhead_steps`` is positive.
    """
    torch.manual_seed(config.seed)
    model, loss_fn, optimizer = task_case(build_task(case, config))
    device = torch.device(config.device)
    model.to(device)
    batch = {k: v.to(device) for k, v in make_batch(config.batch_size, config.image_size, config.num_classes, config.seed).items()}
    for _ in range(config.warmup):
        measure_training_step(model, lambda: loss_fn(batch), optimizer)
    reports = [measure_training_step(model, lambda: loss_fn(batch), optimizer) for _ in range(max(config.steps, 1))]
    row = reports[-1].to_dict()
    row["step_time_s"] = statistics.median(r.step_time_s for r in reports)
    row["method"] = name
    overhead = None
    if config.overhead_steps and name == REFERENCE:
        overhead = measure_overhead(model, loss_fn, optimizer, batch, config.overhead_steps)
    del model, optimizer, reports
    gc.collect()
    return row | ({"meter_overhead": overhead} if overhead else {})


def run_benchmark(
    cases: Mapping[str, BenchmarkCase],
    config: BenchmarkConfig,
    names: Sequence[str] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the selected cases (:func:`select_cases`), with ``ratios`` (:func:`add_ratios`).

    ``on_row`` is called with each row as soon as it is measured (progress output).
    """
    import timm.layers

    timm.layers.set_fused_attn(config.fused_attn)
    rows = []
    for name in select_cases(cases, names):
        rows.append(run_case(name, cases[name], config))
        if on_row is not None:
            on_row(rows[-1])
    add_ratios(rows)
    return rows


def measure_overhead(
    model: nn.Module, loss_fn: Callable[[dict[str, Tensor]], Tensor], optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor], steps: int,
) -> dict[str, Any]:
    """Meter overhead on one training step: ``steps`` pairs of plain and metered steps on the same model.

    The order inside each pair alternates, so drifts and other processes hit both sides alike;
    the overhead is reported from the medians and from the minima (least disturbed runs), in %.
    """

    def plain() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        optimizer.step()
        if batch["image"].is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def metered() -> float:
        start = time.perf_counter()
        measure_training_step(model, lambda: loss_fn(batch), optimizer)
        return time.perf_counter() - start

    plain_t, metered_t = [], []
    for k in range(steps):
        if k % 2:
            metered_t.append(metered())
            plain_t.append(plain())
        else:
            plain_t.append(plain())
            metered_t.append(metered())
    p, m = statistics.median(plain_t), statistics.median(metered_t)
    return {
        "steps": steps,
        "plain_s": p,
        "metered_s": m,
        "overhead_pct": 100.0 * (m - p) / p,
        "overhead_min_pct": 100.0 * (min(metered_t) - min(plain_t)) / min(plain_t),
        "plain_all_s": plain_t,
        "metered_all_s": metered_t,
    }


# ---- output -----------------------------------------------------------------------------------------------
def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Give every row ``ratios``: each of :data:`COLUMNS` divided by the reference row's (in place)."""
    ref = next(r for r in rows if r["method"] == REFERENCE)
    for row in rows:
        row["ratios"] = {key: (row[key] / ref[key] if ref[key] else float("nan")) for key, _ in COLUMNS}


def _fmt(key: str, value: float) -> str:
    if key == "trainable_params":
        return f"{int(value):,d}"
    if key.endswith("_bytes"):
        return f"{value / MIB:,.1f}"
    return f"{value:.3f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table: each column with its ratio, then peak RSS (MiB)."""
    head = ["method"]
    for _, label in COLUMNS:
        head += [label, "ratio"]
    head += ["peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["method"]]
        for key, _ in COLUMNS:
            cells += [_fmt(key, row[key]), f"{row['ratios'][key]:.3f}"]
        cells.append(f"{row['peak_rss_bytes'] / MIB:,.0f}" if row.get("peak_rss_bytes") else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead_line(row: dict[str, Any]) -> str | None:
    """One line on the meter overhead of ``row`` (``None`` when it was not measured)."""
    o = row.get("meter_overhead")
    if not o:
        return None
    return (
        f"meter overhead ({row['method']}, {o['steps']} interleaved pairs): median {o['overhead_pct']:+.1f}% "
        f"({o['plain_s']:.3f} s plain, {o['metered_s']:.3f} s metered), best-of {o['overhead_min_pct']:+.1f}%"
    )


def title(config: BenchmarkConfig) -> str:
    """One-line description of the run (table heading and chart title)."""
    return (
        f"{config.backbone}, {config.image_size}px, batch {config.batch_size}, fp32, "
        f"{'fused' if config.fused_attn else 'plain'} attention, {config.device}"
    )


def run_metadata(config: BenchmarkConfig) -> dict[str, Any]:
    """The run's settings and library versions, for the JSON output."""
    import timm

    return {
        "backbone": config.backbone,
        "backbone_kwargs": dict(config.backbone_kwargs),
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "num_classes": config.num_classes,
        "fused_attn": config.fused_attn,
        "device": config.device,
        "dtype": "float32",
        "warmup": config.warmup,
        "steps": config.steps,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def bar_chart(rows: list[dict[str, Any]], path: str | Path, chart_title: str) -> None:
    """Write a PNG bar chart of every row's ratios to the reference, one group per column of :data:`COLUMNS`."""
    plt = pyplot()
    import numpy as np

    labels = [label for _, label in COLUMNS]
    width = 0.8 / len(rows)
    x = np.arange(len(COLUMNS))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, row in enumerate(rows):
        values = [row["ratios"][key] for key, _ in COLUMNS]
        bars = ax.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=row["method"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle="--")
    ax.set_xticks(x, labels)
    ax.set_ylabel("ratio to full fine-tuning")
    ax.set_title(chart_title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
