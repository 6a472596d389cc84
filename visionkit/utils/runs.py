"""Run folders: reading ``metrics.csv`` (written by Lightning's CSVLogger) and making fresh output folders."""

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


def check_out(parent: str | Path, flag: str = "--out") -> None:
    """Fail early when ``parent`` cannot hold run folders (it exists and is not a folder)."""
    root = Path(parent)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{flag} '{parent}' exists and is not a folder")


def new_run_dir(parent: str | Path, flag: str = "--out") -> Path:
    """``<parent>/run_NNN`` with the first free NNN (created; never an existing folder)."""
    check_out(parent, flag)
    root = Path(parent)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[4:]) for p in root.glob("run_*") if p.name[4:].isdigit()]
    for index in range(max(taken, default=-1) + 1, max(taken, default=-1) + 1000):
        path = root / f"run_{index:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder under '{parent}'")
