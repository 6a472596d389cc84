"""Saved-for-backward bytes against depth, reversible vs vanilla rewired stages, and their step-time ratio.

For each depth a timm model with one stage of that many residual blocks is rewired
(``visionkit.methods.re2tal.rewire``) and run in both modes with the same weights, side by side:

* ``--family vit``: ``test_vit`` with ``depth`` blocks (``2 * depth`` residual branches), stage ``blocks``;
* ``--family resnet``: a timm ResNet whose ``layer1`` has ``depth`` identity-shortcut BasicBlocks.

Columns: bytes saved inside the stage and in the whole model (``SavedTensorMeter``, parameters excluded),
and the median time of a training step (forward, sum, backward; modes alternating). The stage's reversible
bytes should stay flat in depth (two streams) while vanilla grows linearly; the step-time ratio
reversible/vanilla is reported against the 1.6x target (about one extra forward per branch). The logic is
:mod:`visionkit.methods.re2tal.measure`.

    python scripts/bench_re2tal_memory.py --out runs/re2tal_memory        # ~1 min on 1 thread
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET = 1.6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_re2tal_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="folder of re2tal_memory.json / .png (created)")
    p.add_argument("--family", choices=("vit", "resnet"), default="vit")
    p.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 16], help="blocks in the stage")
    p.add_argument("--width", type=int, default=64, help="ViT embedding / ResNet layer1 channels")
    p.add_argument("--image-size", type=int, default=32, help="input side (px); the ViT uses 4 px patches")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per mode and depth (median)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device of the model and batch")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(*args.depths, args.width, args.image_size, args.batch_size, args.repeats, args.threads) < 1:
        p.error("depths, width, image-size, batch-size, repeats and threads must be positive")
    if args.family == "vit" and args.image_size % 4:
        p.error(f"--image-size must be a multiple of the 4 px patches, got {args.image_size}")
    return args


def builder(args: argparse.Namespace):
    """``depth -> model`` of ``--family`` in train mode on ``--device``, and the name of its stage."""
    import timm
    import torch

    def build(depth: int) -> torch.nn.Module:
        torch.manual_seed(args.seed)
        if args.family == "vit":
            net = timm.create_model("test_vit", img_size=args.image_size, patch_size=4, embed_dim=args.width,
                                    depth=depth, num_heads=2, num_classes=10)
        else:  # the default stem gives 64 channels: with layer1 at 64 every layer1 block has an identity shortcut
            net = timm.create_model("resnet18", layers=[depth, 1, 1, 1], channels=[64, args.width, args.width, args.width],
                                    num_classes=10)
        return net.to(args.device).train()

    return build, "blocks" if args.family == "vit" else "layer1"


def table(rows: list[dict]) -> str:
    """Markdown table of the rows (bytes in KiB)."""
    lines = ["| depth | reversible stage KiB | vanilla stage KiB | vanilla/reversible | reversible model KiB | "
             "vanilla model KiB | step ms rev | step ms van | time rev/van |", "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['depth']} | {r['reversible_stage_bytes'] / 1024:.1f} | {r['vanilla_stage_bytes'] / 1024:.1f} | "
            f"{r['vanilla_stage_bytes'] / max(r['reversible_stage_bytes'], 1):.2f}x | {r['reversible_total_bytes'] / 1024:.1f} | "
            f"{r['vanilla_total_bytes'] / 1024:.1f} | {1e3 * r['reversible_seconds']:.2f} | {1e3 * r['vanilla_seconds']:.2f} | "
            f"{r['time_ratio']:.2f}x |")
    return "\n".join(lines)


def chart(rows: list[dict], title: str, path: Path) -> None:
    """Saved bytes against depth (stage and model, both modes) and the step-time ratio against depth."""
    from visionkit.utils.viz import pyplot, save_figure

    plt = pyplot()
    depths = [r["depth"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for mode, colour in (("reversible", "tab:green"), ("vanilla", "tab:red")):
        left.plot(depths, [r[f"{mode}_stage_bytes"] / 2**20 for r in rows], "o-", color=colour, label=f"{mode}, stage")
        left.plot(depths, [r[f"{mode}_total_bytes"] / 2**20 for r in rows], "s--", color=colour, alpha=0.6,
                  label=f"{mode}, model")
    left.set_xlabel("blocks in the stage")
    left.set_ylabel("saved for backward (MiB)")
    left.set_xticks(depths)
    left.legend(fontsize=7)
    right.plot(depths, [r["time_ratio"] for r in rows], "o-", color="tab:blue")
    right.axhline(TARGET, color="grey", ls=":", label=f"target {TARGET}x")
    right.set_xlabel("blocks in the stage")
    right.set_ylabel("step time reversible / vanilla")
    right.set_xticks(depths)
    right.set_ylim(0, max(TARGET + 0.4, *(r["time_ratio"] + 0.2 for r in rows)))
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    """Print the table and the verdicts, write the JSON and the chart; returns 0."""
    args = parse_args(argv)
    import torch

    from visionkit.errors import exit_on_user_error
    from visionkit.methods.re2tal.measure import depth_table

    torch.set_num_threads(args.threads)
    with exit_on_user_error("bench_re2tal_memory"):
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        build, stage = builder(args)
        torch.manual_seed(args.seed)
        x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
        rows = [r.as_dict() for r in depth_table(build, x, args.depths, stage, repeats=args.repeats)]
    title = (f"{args.family} (width {args.width}), batch {args.batch_size} x {args.image_size} px, "
             f"{args.device}, {args.threads} thread(s)")
    print(title)
    print(table(rows))
    flat = [r["reversible_stage_bytes"] for r in rows]
    spread = (max(flat) - min(flat)) / min(flat) if min(flat) else float("inf")
    growth = rows[-1]["vanilla_stage_bytes"] / max(rows[0]["vanilla_stage_bytes"], 1)
    print(f"\nreversible stage bytes spread over depths {spread:.1%} (target within 10%): "
          f"{'met' if spread <= 0.10 else 'MISSED'}")
    print(f"vanilla stage bytes, depth {rows[-1]['depth']} / depth {rows[0]['depth']}: {growth:.2f}x "
          f"(linear: {rows[-1]['depth'] / rows[0]['depth']:.2f}x)")
    worst = max(r["time_ratio"] for r in rows)
    print(f"step time reversible/vanilla, worst depth {worst:.2f}x (target <= {TARGET}x, reported only): "
          f"{'met' if worst <= TARGET else 'MISSED'}")
    (out / "re2tal_memory.json").write_text(json.dumps({"setting": title, "rows": rows}, indent=2))
    chart(rows, title, out / "re2tal_memory.png")
    print(f"wrote {out / 're2tal_memory.json'} and {out / 're2tal_memory.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
