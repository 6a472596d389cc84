"""The rows of :func:`visionkit.core.arms.run_arms` as a markdown table, a JSON file and a bar chart.

Nothing is written at import time or under a fixed path: the caller passes the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionkit.utils.viz import pyplot, save_figure

__all__ = ["MIB", "arm_chart", "markdown_table", "write_arm_report"]

MIB = 2**20


def markdown_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    """One line per arm: epochs, lr, the ``metrics`` columns, trainable parameters, memory (MiB and ratio), seconds."""
    head = ["arm", "epochs", "lr", *metrics, "trainable params", "activations MiB", "ratio", "total MiB", "ratio", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["arm"], str(r["epochs"]), f"{r['lr']:g}", *[f"{r.get(m, float('nan')):.3f}" for m in metrics],
                 f"{r['trainable_params']:,d}", f"{r['activation_bytes'] / MIB:.1f}", f"{r['activation_bytes_ratio']:.3f}",
                 f"{r['total_bytes'] / MIB:.1f}", f"{r['total_bytes_ratio']:.3f}", f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def arm_chart(rows: Sequence[dict[str, Any]], path: str | Path, metric: str, metric_label: str, title: str,
              highlight: str = "") -> Path:
    """Three bar panels (``metric``, activation MiB of one step, trainable parameters) as a PNG at ``path``.

    Arms whose name starts with ``highlight`` (when given) are drawn orange, the others grey.
    """
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    arms = [r["arm"] for r in rows]
    colours = ["tab:orange" if highlight and a.startswith(highlight) else "tab:grey" for a in arms]
    panels = [(metric, metric_label), ("activation_bytes", "activation MiB (one step)"), ("trainable_params", "trainable parameters")]
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [r[key] / MIB if key.endswith("_bytes") else r[key] for r in rows]
        bars = ax.bar(arms, values, color=colours)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def write_arm_report(rows: Sequence[dict[str, Any]], out_dir: str | Path, name: str, metric: str, metric_label: str,
                     title: str, highlight: str = "") -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.json`` (the rows) and ``<out_dir>/<name>.png`` (:func:`arm_chart`); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(list(rows), indent=2))
    return json_path, arm_chart(rows, out / f"{name}.png", metric, metric_label, title, highlight)
