"""``ActivationMemory``: log the training memory of every (n-th) step (see :mod:`visionkit.memory`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
from torch import Tensor

from visionkit.memory.meter import (
    MemoryReport,
    SavedTensorMeter,
    build_memory_report,
    cuda_peak,
    cuda_peak_start,
    model_tensors,
    optimizer_state_bytes,
    reset_peak_rss,
    state_bytes,
)

__all__ = ["ActivationMemory"]


class ActivationMemory(pl.Callback):
    """Measure each training step's memory and log it per step.

    Logged (MiB unless noted): ``mem/activations_mib`` (bytes saved for backward, each storage
    once, parameters and buffers excluded), ``mem/states_mib`` (parameters + buffers + gradients
    + optimizer state), ``mem/total_mib``, ``mem/gradients_mib``, ``mem/optimizer_mib``,
    ``mem/peak_rss_mib``, ``mem/step_time_s`` and, on CUDA, ``mem/cuda_max_allocated_mib``.
    ``last_report`` keeps the latest :class:`~visionkit.memory.MemoryReport`.

    Args:
        every_n_steps: measure batches whose index is a multiple of this (1 = every step).
        per_module: attribute saved bytes to sub-modules (``last_report.by_module``; slower).
        prefix: logged key prefix.
    """

    def __init__(self, every_n_steps: int = 1, per_module: bool = False, prefix: str = "mem/") -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.per_module = per_module
        self.prefix = prefix
        self.last_report: MemoryReport | None = None
        self._meter: SavedTensorMeter | None = None
        self._active = False
        self._start = 0.0
        self._grad_bytes: int | None = None
        self._cuda = False
        self._tensors: tuple[list[Tensor], list[Tensor]] = ([], [])

    def _stop_meter(self) -> None:
        if self._meter is not None:
            self._meter.close()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._active = trainer.global_step % self.every_n_steps == 0
        if not self._active:
            return
        self._grad_bytes = None
        self._tensors = model_tensors(pl_module)
        self._cuda = cuda_peak_start(pl_module.device)
        reset_peak_rss()
        excluded = [*self._tensors[0], *self._tensors[1]]
        self._meter = SavedTensorMeter(excluded, per_module=pl_module if self.per_module else None)
        self._start = time.perf_counter()
        self._meter.__enter__()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if self._active:
            self._stop_meter()  # the forward is over; backward saves nothing new

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._active:
            self._grad_bytes = state_bytes(None, tensors=self._tensors).gradients

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._active or self._meter is None:
            return
        self._stop_meter()
        cuda_bytes = cuda_peak(pl_module.device) if self._cuda else None
        elapsed = time.perf_counter() - self._start
        state = state_bytes(None, tensors=self._tensors)
        state = replace(
            state,
            gradients=state.gradients if self._grad_bytes is None else self._grad_bytes,
            optimizer=sum(optimizer_state_bytes(opt) for opt in trainer.optimizers),
        )
        meter, self._meter, self._active = self._meter, None, False
        self.last_report = build_memory_report(meter, state, cuda_max_allocated_bytes=cuda_bytes, step_time_s=elapsed)
        pl_module.log_dict(self.last_report.log_values(self.prefix), on_step=True, on_epoch=False, batch_size=1)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop_meter()
        self._meter, self._active = None, False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_meter()
        self._meter, self._active = None, False
