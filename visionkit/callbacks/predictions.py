"""``PredictionWriter``: one ``predictions.csv`` per predict run, one row per input."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

#: One predicted batch: ``(dataloader_idx, index (B,), paths or None, probs (B, K) float32)``.
Chunk = tuple[int, np.ndarray, list[str] | None, np.ndarray]


class PredictionWriter(BasePredictionWriter):
    """Write the class probabilities of ``predict`` to ``predictions.csv`` in the run folder.

    Columns: ``index`` (the item's position in the predict dataset), ``path`` (file datasets),
    ``dataloader`` (only with several predict dataloaders), ``pred`` (class index), ``pred_name``
    (when the dataset's or datamodule's ``classes`` are known), then ``prob_<class name or index>``
    per class. Rows are sorted by index.

    Outputs of ``predict_step`` may be a dict ``{"probs": (B, K), "index": (B,), "path": [B str]}``
    or a ``(B, K)`` tensor of probabilities (a task whose predictions are no class probabilities,
    e.g. retrieval embeddings, gets a warning and no file); a missing ``index``/``path`` is taken from the batch,
    then from the sampler's indices. Under DDP the rows of every rank are gathered on rank 0 and
    de-duplicated by index (a padding sampler repeats items).

    The file goes into ``trainer.log_dir`` (the first logger's run folder; without a logger the
    trainer's ``default_root_dir``, the current folder by default). An existing file is never
    overwritten: the name is claimed create-exclusive, ``predictions_1.csv``, ``predictions_2.csv``,
    ... when it is taken. Prints ``wrote N predictions to <path>`` (rank 0); the path is kept in
    :attr:`path`.

    Args:
        filename: file name of the CSV (``.csv`` suffix).
    """

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        if Path(filename).name != filename or not filename.endswith(".csv"):
            raise ValueError(f"filename must be a plain file name ending in .csv, got '{filename}'")
        self.filename = filename
        self.path: Path | None = None
        self._chunks: list[Chunk] = []
        self._other: str | None = None

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._chunks, self._other = [], None

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's probabilities (on the CPU) with its item indices and paths."""
        if not has_probabilities(outputs):
            self._other = type(pl_module).__name__
            return
        self._chunks.append(batch_chunk(outputs, batch, trainer.predict_loop.current_batch_indices, dataloader_idx))

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        """Gather the rows of every rank and write them on rank 0 (``predictions`` are not used)."""
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        chunks = gather_chunks(self._chunks, trainer.world_size)
        self._chunks = []
        if not trainer.is_global_zero:
            return
        if self._other is not None and not chunks:
            rank_zero_warn(f"PredictionWriter: {self._other}.predict_step returns no class probabilities; "
                           "no predictions.csv written")
            return
        text, count = csv_text(chunks, class_names(trainer, chunks))
        self.path = claim_and_write(Path(log_dir or "."), self.filename, text)
        print(f"wrote {count} predictions to {self.path}")


def has_probabilities(outputs: Any) -> bool:
    """Whether ``predict_step`` returned class probabilities: a ``(B, K)`` tensor or a dict with ``probs``."""
    probs = outputs.get("probs") if isinstance(outputs, dict) else outputs
    return isinstance(probs, Tensor) and probs.ndim == 2


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return value.tolist() if isinstance(value, Tensor) else list(value)


def batch_chunk(outputs: Any, batch: Any, sampler_indices: list[int] | None, dataloader_idx: int = 0) -> Chunk:
    """``(dataloader_idx, index (B,), paths, probs (B, K))`` of one predicted batch.

    ``outputs`` is a dict with ``probs`` (and optional ``index``/``path``) or a probability tensor;
    ``index`` and ``path`` fall back to the batch's, and ``index`` then to ``sampler_indices``.
    """
    out = outputs if isinstance(outputs, dict) else {"probs": outputs}
    if not isinstance(out.get("probs"), Tensor) or out["probs"].ndim != 2:
        raise ValueError(
            "PredictionWriter needs predict_step to return a (B, K) probability tensor or a dict with 'probs' "
            f"(B, K); got {type(outputs).__name__}"
        )
    probs = out["probs"].detach().float().cpu().numpy()
    items = batch if isinstance(batch, dict) else {}
    index = _as_list(out.get("index", items.get("index")))
    if index is None:
        index = list(sampler_indices or [])
    if len(index) != len(probs):
        raise ValueError(f"PredictionWriter: {len(probs)} predictions but {len(index)} indices in a batch")
    paths = _as_list(out.get("path", items.get("path")))
    return dataloader_idx, np.asarray(index, dtype=np.int64), [str(p) for p in paths] if paths else None, probs


def gather_chunks(chunks: list[Chunk], world_size: int) -> list[Chunk]:
    """The chunks of every rank (all ranks must call this under DDP); this rank's alone otherwise."""
    if world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return chunks
    parts: list[list[Chunk] | None] = [None] * world_size
    torch.distributed.all_gather_object(parts, chunks)
    return [chunk for part in parts for chunk in part or []]


def class_names(trainer: pl.Trainer, chunks: list[Chunk]) -> list[str] | None:
    """Class names of the predict dataset (or the datamodule) when they match the number of classes."""
    num_classes = chunks[0][3].shape[1] if chunks else 0
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    candidates = [getattr(getattr(dl, "dataset", None), "classes", None) for dl in loaders]
    candidates.append(getattr(trainer.datamodule, "classes", None))
    for names in candidates:
        if names is not None and len(names) == num_classes and len(set(map(str, names))) == num_classes:
            return [str(n) for n in names]
    return None


def csv_text(chunks: list[Chunk], names: list[str] | None) -> tuple[str, int]:
    """The CSV text of the rows in ``chunks`` (de-duplicated by ``(dataloader, index)``) and its row count."""
    rows: dict[tuple[int, int], tuple[str | None, np.ndarray]] = {}
    for loader, index, paths, probs in chunks:
        for i, (idx, p) in enumerate(zip(index.tolist(), probs, strict=True)):
            rows.setdefault((loader, idx), (paths[i] if paths else None, p))
    num_classes = chunks[0][3].shape[1] if chunks else 0
    with_path = any(path is not None for path, _ in rows.values())
    several = len({loader for loader, _ in rows}) > 1
    header = ["index"] + ["path"] * with_path + ["dataloader"] * several + ["pred"] + ["pred_name"] * bool(names)
    header += [f"prob_{names[k] if names else k}" for k in range(num_classes)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for (loader, idx), (path, p) in sorted(rows.items()):
        pred = int(np.argmax(p))
        row = [idx] + [path or ""] * with_path + [loader] * several + [pred] + [names[pred]] * bool(names)
        writer.writerow(row + [f"{float(v):.8g}" for v in p])
    return buffer.getvalue(), len(rows)


def claim_and_write(folder: Path, filename: str, text: str) -> Path:
    """Write ``text`` to ``folder/filename``, or ``<stem>_1.csv``, ``<stem>_2.csv``, ... when taken; never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(filename).stem, Path(filename).suffix
    for n in range(10_000):
        path = folder / (filename if n == 0 else f"{stem}_{n}{suffix}")
        try:
            with open(path, "x", encoding="utf-8", newline="") as f:
                f.write(text)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free name for {filename} in '{folder}' (tried {filename} to {stem}_9999{suffix})")
