"""``VisionTask``: the LightningModule every visionkit task and method derives from."""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from visionkit.core.params import ParameterCount, param_groups, parameter_report
from visionkit.errors import check_choice

STAGES = ("train", "val", "test")

# Tuners keep frozen parts in eval mode on purpose (BatchNorm statistics, dropout, drop-path).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def batch_size_of(batch: dict[str, Any]) -> int | None:
    """Samples in a batch: the length of its ``image`` (or ``video``) tensor, ``None`` when it has neither."""
    for key in ("image", "video"):
        if isinstance(batch.get(key), Tensor):
            return len(batch[key])
    return None


def prediction_dict(batch: dict[str, Any], probs: Tensor) -> dict[str, Any]:
    """``{"probs": probs}`` plus the batch's ``index`` (B,) and ``path`` (B str) when it has them."""
    out: dict[str, Any] = {"probs": probs}
    for key in ("index", "path"):
        if key in batch:
            out[key] = batch[key]
    return out


class VisionTask(pl.LightningModule, ABC):
    """Base task (torchgeo's ``BaseTask`` idea) with visionkit's optimisation defaults.

    Subclasses take typed, primitive constructor arguments, call ``super().__init__(...)`` with
    the optimisation ones, and implement :meth:`configure_models` (sets ``self.model``) and
    :meth:`compute_loss`. Metrics come from :meth:`configure_metrics`, cloned per stage with
    ``train_``/``val_``/``test_`` prefixes.

    Args:
        lr: peak learning rate.
        weight_decay: decoupled weight decay (not applied to norms, biases and learned tokens).
        optimizer: ``"adamw"`` or ``"sgd"`` (SGD uses Nesterov momentum ``momentum``).
        momentum: SGD momentum.
        scheduler: ``"cosine"`` (linear warm-up, then cosine decay to 0, stepped per batch) or ``"none"``.
        warmup_epochs: warm-up length in epochs (fractions allowed).
        warmup_start_factor: the warm-up's first-step factor of ``lr``, rising linearly to 1 (torch's
            ``LinearLR(start_factor)``, stepped per batch); ``None``: ``1 / (warmup steps + 1)``.
    """

    #: constructor arguments left out of ``hparams``.
    ignore: ClassVar[tuple[str, ...]] = ()
    #: metric that picks the best checkpoint, and whether it is minimised or maximised.
    monitor: ClassVar[str] = "val_loss"
    mode: ClassVar[Literal["min", "max"]] = "min"
    #: Trainer arguments this task needs (e.g. ``{"inference_mode": False}``); the CLI applies them.
    trainer_overrides: ClassVar[dict[str, Any]] = {}

    model: nn.Module

    def __init__(
        self,
        lr: float = 1.0e-3,
        weight_decay: float = 0.05,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        momentum: float = 0.9,
        scheduler: Literal["cosine", "none"] = "cosine",
        warmup_epochs: float = 1.0,
        warmup_start_factor: float | None = None,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        check_choice("optimizer", optimizer, ("adamw", "sgd"))
        check_choice("scheduler", scheduler, ("cosine", "none"))
        if warmup_start_factor is not None and not 0 < warmup_start_factor <= 1:
            raise ValueError(f"warmup_start_factor must be in (0, 1], got {warmup_start_factor}")
        self.save_hyperparameters(ignore=list(self.ignore))
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", self.metrics.clone(prefix=f"{stage}_"))

    # ---- template methods -------------------------------------------------------------
    @abstractmethod
    def configure_models(self) -> None:
        """Build ``self.model`` from ``self.hparams``."""

    def configure_losses(self) -> None:
        """Build loss modules (optional)."""

    def configure_metrics(self) -> None:
        """Set ``self.metrics`` to a ``MetricCollection`` (optional); it is cloned per stage."""
        self.metrics = MetricCollection({})

    @abstractmethod
    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        """Return ``{"loss": ..., <component>: ..., "preds": ..., "target": ...}`` for a batch.

        ``preds``/``target`` (optional) feed the stage's metrics; other scalar tensors are logged
        as ``<stage>_<name>``.
        """

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Images for :class:`~visionkit.callbacks.ImageLogger`: name -> ``(B, 3, H, W)`` in [0, 1]."""
        return {"input": batch["image"][:, :3] if batch["image"].shape[1] >= 3 else batch["image"].expand(-1, 3, -1, -1)}

    # ---- metrics and steps ------------------------------------------------------------
    def _shared_step(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        out = self.compute_loss(batch, stage)
        batch_size = batch_size_of(batch)
        on_step = stage == "train"
        for key, value in out.items():
            if key in ("preds", "target") or not isinstance(value, Tensor) or value.ndim != 0:
                continue
            self.log(
                f"{stage}_{key}", value.detach(), on_step=on_step, on_epoch=True,
                prog_bar=key == "loss", batch_size=batch_size, sync_dist=not on_step,
            )
        if "preds" in out and "target" in out and len(self.metrics):
            metrics = getattr(self, f"{stage}_metrics")
            metrics.update(out["preds"].detach(), out["target"])
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch_size)
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"probs": (B, K) float32, "index": (B,) int64, "path": list of B str}`` for a batch.

        ``probs`` is the softmax of ``self(batch["image"])`` over classes (tasks whose ``forward``
        does not return class logits override this); ``index`` and ``path`` are copied from the batch
        when it has them (every visionkit dataset has ``index``; file datasets have ``path``).
        """
        return prediction_dict(batch, self(batch["image"]).float().softmax(-1))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class (as ``visionkit fit`` does) so checkpoints of Python-API runs load by path too."""
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict) and "_class_path" not in hparams and type(self).__module__.startswith("visionkit."):
            hparams["_class_path"] = f"{type(self).__module__}.{type(self).__qualname__}"

    # ---- optimisation -----------------------------------------------------------------
    def parameter_report(self) -> ParameterCount:
        """Trainable and total parameters of the task's model."""
        return parameter_report(self.model)

    def optimizer_groups(self) -> list[dict]:
        """Optimizer parameter groups: trainable parameters split into decay / no-decay groups.

        Override to give some parameters their own ``lr`` (a group's ``lr`` is its peak; the
        warm-up/cosine factor scales every group alike).
        """
        return param_groups(self, self.hparams.weight_decay)

    def configure_optimizers(self) -> Any:
        """AdamW/SGD over trainable parameters only, with no-decay groups; optional warm-up + cosine."""
        hp = self.hparams
        groups = self.optimizer_groups()
        if not groups:
            raise ValueError(f"{type(self).__name__} has no trainable parameters to optimise")
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if hp.scheduler == "none":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = total / max(self.trainer.max_epochs or 1, 1)
        warmup = min(int(round(hp.warmup_epochs * per_epoch)), total - 1)

        def factor(step: int) -> float:
            if step < warmup:
                start = hp.get("warmup_start_factor")
                return (step + 1) / (warmup + 1) if start is None else start + (1.0 - start) * step / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
