"""Training memory of fine-tuning methods, side by side, on one backbone / batch / image size.

Trains one step of each method (after ``--warmup`` unmeasured steps) and reports trainable
parameters, activation bytes (saved for backward, each storage once, parameters excluded),
total training bytes (parameters + buffers + gradients + optimizer state + activations), step
time, and each as a ratio to full fine-tuning; plus peak RSS (and CUDA peak on GPU) as a
sanity check. Prints a markdown table, writes ``bench_memory.json`` and ``bench_memory.png``
(bar chart of the ratios) into ``--out-dir``.

Methods come from :func:`visionkit.memory.register_benchmark`. The baselines (``full``,
``linear``, ``lora``) are registered here; a method package registers its own builder in an
optional ``visionkit/methods/<method>/bench.py`` module, which this script imports.

Example (offline, random init)::

    python scripts/bench_memory.py --backbone vit_small_patch16_224 --image-size 224 --batch-size 8
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import pkgutil
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BASELINES = ("full", "linear", "lora")


# ---- baselines ---------------------------------------------------------------------------------------
def task_case(task: Any) -> tuple[Any, Any, Any]:
    """``(model, loss_fn, optimizer)`` for a visionkit ``VisionTask`` (its own trainable-only optimizer)."""
    task.train()
    optimizer = task.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]

    def loss_fn(batch: dict) -> Any:
        return task.compute_loss(batch, "train")["loss"]

    return task, loss_fn, optimizer


def _classification(finetune: str, **extra: Any):
    def build(backbone: str, image_size: int, num_classes: int, backbone_kwargs: dict) -> tuple[Any, Any, Any]:
        import inspect

        from visionkit.tasks.classification import ClassificationTask

        sized = {"image_size": image_size} if "image_size" in inspect.signature(ClassificationTask).parameters else {}
        task = ClassificationTask(
            backbone=backbone,
            backbone_kwargs=backbone_kwargs,
            num_classes=num_classes,
            finetune=finetune,
            scheduler="none",
            **sized,
            **extra,
        )
        return task_case(task)

    return build


def register_baselines() -> None:
    """Full fine-tuning, linear probe and LoRA (r=8 on ``qkv``), all through ``ClassificationTask``."""
    from visionkit.memory import benchmark_builders, register_benchmark

    if all(name in benchmark_builders() for name in BASELINES):
        return
    register_benchmark("full")(_classification("full"))
    register_benchmark("linear")(_classification("linear"))
    register_benchmark("lora")(_classification("lora", lora_r=8, lora_alpha=16.0))


def register_method_benchmarks() -> list[str]:
    """Import ``visionkit.methods.<name>.bench`` modules (they call ``register_benchmark``)."""
    import visionkit.methods as methods

    loaded = []
    for info in pkgutil.iter_modules(methods.__path__):
        name = f"visionkit.methods.{info.name}.bench"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


# ---- measuring ----------------------------------------------------------------------------------------
def make_batch(batch_size: int, image_size: int, num_classes: int, seed: int, in_chans: int = 3) -> dict:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(batch_size, in_chans, image_size, image_size, generator=gen),
        "label": torch.randint(0, num_classes, (batch_size,), generator=gen),
    }


def run_method(name: str, builder: Any, args: argparse.Namespace, kwargs: dict) -> dict:
    import torch

    from visionkit.memory import measure_training_step

    torch.manual_seed(args.seed)
    model, loss_fn, optimizer = builder(
        backbone=args.backbone, image_size=args.image_size, num_classes=args.num_classes, backbone_kwargs=kwargs
    )
    device = torch.device(args.device)
    model.to(device)
    batch = {k: v.to(device) for k, v in make_batch(args.batch_size, args.image_size, args.num_classes, args.seed).items()}
    for _ in range(args.warmup):
        measure_training_step(model, lambda: loss_fn(batch), optimizer)
    reports = [measure_training_step(model, lambda: loss_fn(batch), optimizer) for _ in range(max(args.steps, 1))]
    report = reports[-1]
    row = report.to_dict()
    row["step_time_s"] = statistics.median(r.step_time_s for r in reports)
    row["method"] = name
    overhead = None
    if args.overhead_steps and name == "full":
        overhead = measure_overhead(model, loss_fn, optimizer, batch, args.overhead_steps)
    del model, optimizer, reports
    gc.collect()
    return row | ({"meter_overhead": overhead} if overhead else {})


def measure_overhead(model: Any, loss_fn: Any, optimizer: Any, batch: dict, steps: int) -> dict:
    """Meter overhead on one training step: ``steps`` pairs of plain and metered steps on the same model.

    The order inside each pair alternates, so drifts and other processes hit both sides alike;
    the overhead is reported from the medians and from the minima (least disturbed runs).
    """
    import torch

    from visionkit.memory import measure_training_step

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


# ---- output -------------------------------------------------------------------------------------------
MIB = 2**20
COLUMNS = (
    ("trainable_params", "trainable params"),
    ("activation_bytes", "activations MiB"),
    ("total_bytes", "total MiB"),
    ("step_time_s", "step s"),
)


def add_ratios(rows: list[dict]) -> None:
    ref = next(r for r in rows if r["method"] == "full")
    for row in rows:
        row["ratios"] = {key: (row[key] / ref[key] if ref[key] else float("nan")) for key, _ in COLUMNS}


def _fmt(key: str, value: float) -> str:
    if key == "trainable_params":
        return f"{int(value):,d}"
    if key.endswith("_bytes"):
        return f"{value / MIB:,.1f}"
    return f"{value:.3f}"


def markdown_table(rows: list[dict]) -> str:
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


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vit_small_patch16_224", help="timm model name (random init)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--methods", default=None, help="comma-separated names (default: every registered method)")
    p.add_argument("--backbone-kwargs", default="{}", help="JSON dict of extra timm.create_model arguments")
    p.add_argument("--fused-attn", action="store_true", help="use timm's fused SDPA attention (default: plain, as in the spec)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps before the measured one")
    p.add_argument("--steps", type=int, default=1, help="measured steps (median step time)")
    p.add_argument("--overhead-steps", type=int, default=0, help="also time N plain vs N metered full-FT steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="logs/bench_memory", help="where the JSON and PNG go")
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"bench_memory: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        kwargs = json.loads(args.backbone_kwargs)
    except json.JSONDecodeError as err:
        return fail(f"--backbone-kwargs is not JSON ({err})")
    if args.image_size < 1 or args.batch_size < 1:
        return fail("--image-size and --batch-size must be positive")
    import timm
    import timm.layers
    import torch

    from visionkit.backbones.factory import OPEN_CLIP_PREFIX, BackboneError
    from visionkit.memory import benchmark_builders

    if not args.backbone.startswith(OPEN_CLIP_PREFIX) and not timm.is_model(args.backbone):
        close = timm.list_models(f"*{args.backbone[:6]}*")[:5]
        return fail(f"backbone '{args.backbone}' is not a timm model name" + (f" (similar: {close})" if close else ""))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return fail("--device cuda requested but CUDA is not available")
    timm.layers.set_fused_attn(args.fused_attn)

    register_baselines()
    register_method_benchmarks()
    builders = benchmark_builders()
    names = [n.strip() for n in args.methods.split(",")] if args.methods else list(builders)
    unknown = [n for n in names if n not in builders]
    if unknown:
        return fail(f"unknown method(s) {unknown}; registered: {list(builders)}")
    if "full" not in names:
        names.insert(0, "full")  # the reference of every ratio

    rows = []
    for name in names:
        try:
            rows.append(run_method(name, builders[name], args, kwargs))
        except BackboneError as err:
            return fail(str(err).splitlines()[0])
        print(f"  measured {name}: {rows[-1]['activation_bytes'] / MIB:.1f} MiB activations", file=sys.stderr)
    add_ratios(rows)

    title = (
        f"{args.backbone}, {args.image_size}px, batch {args.batch_size}, fp32, "
        f"{'fused' if args.fused_attn else 'plain'} attention, {args.device}"
    )
    table = markdown_table(rows)
    print(f"\n**{title}**\n\n{table}\n")
    for row in rows:
        if "meter_overhead" in row:
            o = row["meter_overhead"]
            print(
                f"meter overhead ({row['method']}, {o['steps']} interleaved pairs): median {o['overhead_pct']:+.1f}% "
                f"({o['plain_s']:.3f} s plain, {o['metered_s']:.3f} s metered), best-of {o['overhead_min_pct']:+.1f}%"
            )

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": args.backbone,
        "backbone_kwargs": kwargs,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "num_classes": args.num_classes,
        "fused_attn": args.fused_attn,
        "device": args.device,
        "dtype": "float32",
        "warmup": args.warmup,
        "steps": args.steps,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    (out / "bench_memory.json").write_text(json.dumps({"config": meta, "rows": rows}, indent=2))
    bar_chart(rows, out / "bench_memory.png", title)
    print(f"wrote {out / 'bench_memory.json'} and {out / 'bench_memory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
