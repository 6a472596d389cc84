"""Training memory of fine-tuning methods, side by side, on one backbone / batch / image size.

Trains one step of each method (after ``--warmup`` unmeasured steps) and reports trainable
parameters, activation bytes (saved for backward, each storage once, parameters excluded),
total training bytes (parameters + buffers + gradients + optimizer state + activations), step
time, and each as a ratio to full fine-tuning; plus peak RSS (and CUDA peak on GPU) as a
sanity check. Prints a markdown table, writes ``bench_memory.json`` and ``bench_memory.png``
(bar chart of the ratios) into ``--out-dir``.

The compared methods are the table ``CASES`` below (the experiment); the runner, ratios, table
and chart are :mod:`visionkit.memory.benchmark`.

Example (offline, random init)::

    python scripts/bench_memory.py --backbone vit_small_patch16_224 --image-size 224 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from visionkit.errors import exit_on_user_error
from visionkit.memory.benchmark import BenchmarkCase, BenchmarkConfig

PROG = "bench_memory"
CLASSIFICATION = "visionkit.tasks.classification.ClassificationTask"
UNIPT = "visionkit.methods.unipt.task.UniPTTask"
HST = "visionkit.methods.hst.task.HSTTask"

#: name -> (task class, its own arguments); backbone, image size and classes come from the command line.
CASES: dict[str, BenchmarkCase] = {
    "full": BenchmarkCase(CLASSIFICATION, {"finetune": "full"}),
    "linear": BenchmarkCase(CLASSIFICATION, {"finetune": "linear"}),
    #: LoRA r=8 on ``qkv`` (peft)
    "lora": BenchmarkCase(CLASSIFICATION, {"finetune": "lora", "lora_r": 8, "lora_alpha": 16.0}),
    #: UniPT r=2, token variant, class-token read-out (only the class-token query row is computed)
    "unipt": BenchmarkCase(UNIPT, {"reduction": 2, "variant": "token", "readout": "cls"}),
    #: the same with every token's output computed and averaged (the paper's all-token interaction)
    "unipt_all_tokens": BenchmarkCase(UNIPT, {"reduction": 2, "variant": "token", "readout": "mean"}),
    #: HST, official semantics (``HSTTask`` defaults): side widths 32/48/64/72, one meta token per ViT block,
    #: ViT block LayerNorms trained; gradients flow back through the frozen ViT into the meta tokens
    "hst": BenchmarkCase(HST, {}),
    #: HST detached (visionkit's memory-saving variant): ViT under no_grad, no meta tokens, ViT norms frozen
    "hst_detached": BenchmarkCase(HST, {"detached": True}),
    #: the same with half-width side stages (16/24/32/36)
    "hst_detached_half": BenchmarkCase(HST, {"detached": True, "scale": 0.5}),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vit_small_patch16_224", help="timm model name (random init)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--methods", default=None, help=f"comma-separated names (default: all of {list(CASES)})")
    p.add_argument("--backbone-kwargs", default="{}", help="JSON dict of extra timm.create_model arguments")
    p.add_argument("--fused-attn", action="store_true", help="use timm's fused SDPA attention (default: plain, as in the spec)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps before the measured one")
    p.add_argument("--steps", type=int, default=1, help="measured steps (median step time)")
    p.add_argument("--overhead-steps", type=int, default=0, help="also time N plain vs N metered full-FT steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="logs/bench_memory", help="where the JSON and PNG go")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Measure the selected cases, print the table, write the JSON and the chart."""
    from visionkit.memory import benchmark as bench

    try:
        backbone_kwargs = json.loads(args.backbone_kwargs)
    except json.JSONDecodeError as err:
        raise bench.BenchmarkError(f"--backbone-kwargs is not JSON ({err})") from None
    config = BenchmarkConfig(
        backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size, num_classes=args.num_classes,
        backbone_kwargs=backbone_kwargs, fused_attn=args.fused_attn, warmup=args.warmup, steps=args.steps,
        overhead_steps=args.overhead_steps, device=args.device, seed=args.seed,
    )
    names = [n.strip() for n in args.methods.split(",")] if args.methods else None
    bench.select_cases(CASES, names)  # unknown names fail before anything is built
    bench.check_backbone(config)

    def progress(row: dict) -> None:
        print(f"  measured {row['method']}: {row['activation_bytes'] / bench.MIB:.1f} MiB activations", file=sys.stderr)

    rows = bench.run_benchmark(CASES, config, names, on_row=progress)
    title = bench.title(config)
    print(f"\n**{title}**\n\n{bench.markdown_table(rows)}\n")
    for row in rows:
        if line := bench.overhead_line(row):
            print(line)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_memory.json").write_text(json.dumps({"config": bench.run_metadata(config), "rows": rows}, indent=2))
    bench.bar_chart(rows, out / "bench_memory.png", title)
    print(f"wrote {out / 'bench_memory.json'} and {out / 'bench_memory.png'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on bad input, with one ``error:`` line)."""
    args = parse_args(argv)
    try:
        with exit_on_user_error(PROG):
            run(args)
    except SystemExit as exit_:
        return int(exit_.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
