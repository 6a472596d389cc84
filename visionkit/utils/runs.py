"""Reading a run folder's ``metrics.csv`` (written by Lightning's CSVLogger)."""

from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(log_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``<log_dir>/metrics.csv``."""
    with open(Path(log_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last non-empty value of a column."""
    values = [r[key] for r in rows if r.get(key)]
    if not values:
        raise KeyError(f"no '{key}' in metrics")
    return float(values[-1])


def epoch_values(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epoch: value}`` of a per-epoch column."""
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key) and r.get("epoch")}


def run_dirs(root: str | Path = "logs") -> list[Path]:
    """Run folders (``<root>/<name>/version_N``), oldest first."""
    return sorted(Path(root).glob("*/version_*"), key=lambda p: (p.parent.name, int(p.name.split("_")[1])))
