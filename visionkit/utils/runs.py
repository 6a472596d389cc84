"""Run folders: claiming fresh ones atomically, reading and resuming ``metrics.csv``, and discarding stubs.

A run folder is claimed with a create-exclusive ``mkdir``: runs started at the same moment each
get their own ``version_N`` (or ``run_NNN``), and nothing of another run is overwritten.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visionkit.errors import VisionkitError

#: Files that mark a folder as a run folder (a checkpoint's ``<run>/checkpoints/`` parent).
RUN_MARKERS = ("config.yaml", "hparams.yaml", "metrics.csv")


def read_metrics(log_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``<log_dir>/metrics.csv``."""
    with open(Path(log_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def epoch_values(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epoch: value}`` of a per-epoch column."""
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key) and r.get("epoch")}


def check_out(parent: str | Path, flag: str = "--out") -> None:
    """Fail early when ``parent`` cannot hold run folders (it exists and is not a folder)."""
    root = Path(parent)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{flag} '{parent}' exists and is not a folder")


def new_run_dir(parent: str | Path, flag: str = "--out") -> Path:
    """``<parent>/run_NNN`` with the first free NNN (created; never an existing folder)."""
    check_out(parent, flag)
    return claim_numbered_dir(parent, "run_", width=3)


@contextlib.contextmanager
def run_dir_or_nothing(parent: str | Path, flag: str = "--out") -> Iterator[Path]:
    """A :func:`new_run_dir` for a script's whole run, removed again if the run fails (no half-written folder)."""
    out = new_run_dir(parent, flag)
    try:
        yield out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def taken_indices(root: str | Path, prefix: str) -> list[int]:
    """The N of every ``<prefix>N`` entry of ``root`` (empty when ``root`` does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    suffixes = (child.name[len(prefix):] for child in root.iterdir() if child.name.startswith(prefix))
    return [int(s) for s in suffixes if s.isdigit()]


def claim_numbered_dir(root: str | Path, prefix: str, width: int = 0, tries: int = 1000) -> Path:
    """Create and return ``<root>/<prefix>N`` for the first free N after the highest taken one.

    The ``mkdir`` is create-exclusive, so processes racing for the same N each get their own
    folder: a loser of the race moves on to N+1.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    start = max(taken_indices(root, prefix), default=-1) + 1
    for index in range(start, start + tries):
        path = root / f"{prefix}{index:0{width}d}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free '{prefix}N' folder under '{root}' after {tries} tries")


def claim_version_dir(save_dir: str | Path, name: str) -> Path:
    """Create and return a fresh ``<save_dir>/<name>/version_N`` (a logger's run folder)."""
    return claim_numbered_dir(Path(save_dir) / name, "version_")


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when launched alone)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def resumed_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run folder of ``<run>/checkpoints/<file>.ckpt``, or None when the checkpoint is elsewhere."""
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not any((run / marker).is_file() for marker in RUN_MARKERS):
        return None
    return run


def free_file_name(folder: str | Path, name: str) -> str:
    """``name`` when ``folder`` has no such file, else ``<stem>_resume_K<suffix>`` with the first free K."""
    folder, path = Path(folder), Path(name)
    if not (folder / name).exists():
        return name
    k = 1
    while (folder / f"{path.stem}_resume_{k}{path.suffix}").exists():
        k += 1
    return f"{path.stem}_resume_{k}{path.suffix}"


def has_results(run: str | Path) -> bool:
    """Whether a run folder holds something worth keeping: a checkpoint or a logged metric.

    Bookkeeping columns (``step``, ``epoch``, the learning-rate monitor's ``lr-*``) don't count:
    they are logged before the first batch has run.
    """
    run = Path(run)
    if any(run.rglob("*.ckpt")):
        return True
    if not (run / "metrics.csv").is_file():
        return False
    bookkeeping = ("step", "epoch")
    return any(v and k not in bookkeeping and not k.startswith("lr-") for row in read_metrics(run) for k, v in row.items())


def discard_run_dir(run: str | Path, failed: bool) -> bool:
    """Remove a run folder this process claimed when it holds nothing useful; True when removed.

    A failed run is removed unless it has results (:func:`has_results`); a finished run only when
    it is empty (e.g. ``fast_dev_run``, which logs nothing).
    """
    run = Path(run)
    if not run.is_dir():
        return False
    useless = not has_results(run) if failed else not any(p.is_file() for p in run.rglob("*"))
    if useless:
        shutil.rmtree(run, ignore_errors=True)
    return useless


def metrics_before_step(path: str | Path, step: int | None) -> list[str]:
    """Keep the rows of a ``metrics.csv`` logged before ``step``; return its column names.

    A resumed run logs again from its checkpoint's step, so rows at or after it (logged by the
    interrupted run after its last checkpoint) are dropped. The file is replaced atomically.
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    kept = rows if step is None else [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
    if len(kept) < len(rows):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)
    return columns


def append_to_metrics(logger: Any, step: int | None) -> None:
    """Make a Lightning ``CSVLogger`` append to its folder's ``metrics.csv`` instead of wiping it.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; a resumed run
    must continue its curves instead. Rows from ``step`` on are dropped first
    (:func:`metrics_before_step`).
    """
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class _AppendingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            self.metrics_keys = metrics_before_step(self.metrics_file_path, step)

    logger._experiment = _AppendingWriter(log_dir=logger.log_dir)


# ---- the CLI's loggers and their run folder -------------------------------------------------------
class RunFolderError(VisionkitError, ValueError):
    """A logger version that names a folder holding another run."""


def _logger_args(loggers: Any) -> list[Any]:
    """The ``init_args`` of the configured loggers that write under ``save_dir`` (CSV, TensorBoard)."""
    if not isinstance(loggers, list):
        loggers = [loggers]
    return [lg.init_args for lg in loggers if hasattr(lg, "init_args") and "save_dir" in lg.init_args]


def _version_name(version: Any) -> str:
    """Lightning's folder name for a logger version (an int ``N`` means ``version_N``)."""
    return version if isinstance(version, str) else f"version_{version}"


def assign_run_folder(loggers: Any, task_name: str, resume: Path | None, claimed: list[Path]) -> Path | None:
    """Give the configured loggers one shared run folder; returns it (None without a file logger).

    * an explicit logger ``version`` is kept; it may not name another run's folder;
    * a ``fit`` resumed from ``<run>/checkpoints/*.ckpt`` continues in ``<run>``;
    * otherwise a fresh ``version_N`` is claimed atomically (on rank zero; appended to ``claimed``).
    """
    args = _logger_args(loggers)
    if not args:
        return None
    for a in args:
        if a.get("name") in (None, "default", "lightning_logs"):
            a["name"] = task_name
    first = args[0]
    shared = [a for a in args if a.get("save_dir") == first["save_dir"] and a.get("name") == first["name"]]
    rank_zero = global_rank() == 0
    if first.get("version") is not None:
        folder = Path(first["save_dir"]) / first["name"] / _version_name(first["version"])
        if rank_zero:
            _claim_explicit(folder, first["version"], resume, claimed)
        version = first["version"]
    elif resume is not None:
        folder, version = resume, resume.name
        if (Path(first["save_dir"]) / first["name"]).resolve() != resume.parent:
            # the same spelling as the interrupted run's (relative) paths, so ModelCheckpoint restores its state
            for a in shared:
                a["save_dir"], a["name"] = os.path.relpath(resume.parent.parent), resume.parent.name
    elif rank_zero:
        folder = claim_version_dir(first["save_dir"], first["name"])
        claimed.append(folder)
        version = folder.name
    else:  # rank zero claimed the folder; Lightning broadcasts rank zero's paths
        from visionkit.core.trainer import next_version

        folder, version = None, f"version_{next_version(first['save_dir'], first['name'])}"
    for a in shared:
        if a.get("version") is None:
            a["version"] = version
    return folder


def _claim_explicit(folder: Path, version: Any, resume: Path | None, claimed: list[Path]) -> None:
    """Use an explicitly named run folder, unless it holds another run (then a :class:`RunFolderError`)."""
    resuming = resume is not None and folder.resolve() == resume
    if (folder / "config.yaml").exists() and not resuming:
        raise RunFolderError(
            f"logger version '{version}' is the folder of an earlier run ('{folder}' holds config.yaml); "
            "choose a new version, or leave it out to get a fresh version_N"
        )
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    claimed.append(folder)


def append_to_resumed_metrics(trainer: Any, run: Path, step: int | None) -> None:
    """CSV loggers writing into the resumed run's folder append to its ``metrics.csv``."""
    from lightning.pytorch.loggers import CSVLogger

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() == run:
            append_to_metrics(logger, step)
