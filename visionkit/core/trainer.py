"""Trainer defaults: the single place where visionkit's training loop is configured.

Both the CLI (:mod:`visionkit.cli`) and programmatic users (:func:`build_trainer`) read them
from here, so a script and a ``visionkit fit`` run train the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_LOG_DIR = "logs"


def default_precision() -> str:
    """``bf16-mixed`` on CUDA devices that support bfloat16, ``32-true`` everywhere else."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def next_version(save_dir: str | Path, name: str) -> int:
    """The first free ``version_N`` index under ``save_dir/name`` (0 when the folder is new)."""
    root = Path(save_dir) / name
    if not root.is_dir():
        return 0
    taken = []
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith("version_"):
            suffix = child.name.split("_", 1)[1]
            if suffix.isdigit():
                taken.append(int(suffix))
    return max(taken) + 1 if taken else 0


def logger_configs(save_dir: str = DEFAULT_LOG_DIR, name: str = "default") -> list[dict[str, Any]]:
    """CSV and TensorBoard loggers that share one run folder (CSV first, so it owns ``log_dir``)."""
    return [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": save_dir, "name": name},
        },
        {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": save_dir, "name": name, "default_hp_metric": False},
        },
    ]


def callback_configs() -> dict[str, dict[str, Any]]:
    """Callbacks every run gets, by CLI key: progress bar, learning-rate monitor, parameter report, images.

    The CLI exposes each under its key (``--image_logger.num_samples 8``). The checkpoint
    callback is separate (:func:`checkpoint_kwargs`) because its metric comes from the task.
    """
    return {
        "progress_bar": {"class_path": "lightning.pytorch.callbacks.RichProgressBar"},
        "lr_monitor": {
            "class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
            "init_args": {"logging_interval": "epoch"},
        },
        "parameter_report": {"class_path": "visionkit.callbacks.ParameterReport"},
        "image_logger": {"class_path": "visionkit.callbacks.ImageLogger"},
    }


def trainer_defaults() -> dict[str, Any]:
    """Defaults for ``lightning.Trainer`` arguments, as the CLI's ``trainer_defaults``."""
    return {
        "accelerator": "auto",
        "devices": "auto",
        "precision": default_precision(),
        "max_epochs": 10,
        "log_every_n_steps": 10,
        "logger": logger_configs(),
    }


def checkpoint_kwargs(monitor: str, mode: str) -> dict[str, Any]:
    """``ModelCheckpoint`` arguments: keep ``last.ckpt`` plus the best on ``monitor``."""
    return {
        "monitor": monitor,
        "mode": mode,
        "save_last": True,
        "save_top_k": 1,
        "filename": "best-{epoch:03d}",
        "auto_insert_metric_name": False,
    }


def build_trainer(
    save_dir: str = DEFAULT_LOG_DIR,
    name: str = "default",
    monitor: str = "val_loss",
    mode: str = "min",
    **overrides: Any,
):
    """A ``lightning.Trainer`` with visionkit's defaults, for scripts and notebooks.

    Args:
        save_dir: root folder of the run folders.
        name: experiment name (a sub-folder of ``save_dir``).
        monitor: metric that picks the best checkpoint.
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        **overrides: any ``lightning.Trainer`` argument; ``logger`` or ``callbacks`` given here
            replace the defaults.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    kwargs = trainer_defaults()
    version = f"version_{next_version(save_dir, name)}"
    loggers = []
    for cfg in logger_configs(save_dir, name):
        cfg["init_args"]["version"] = version
        loggers.append(instantiate(cfg))
    callbacks = [
        instantiate(cfg)
        for key, cfg in callback_configs().items()
        if key != "progress_bar" or overrides.get("enable_progress_bar", True)
    ]
    callbacks.append(ModelCheckpoint(**checkpoint_kwargs(monitor, mode)))
    kwargs["logger"] = loggers
    kwargs["callbacks"] = callbacks
    kwargs.update(overrides)
    return Trainer(**kwargs)


def instantiate(cfg: dict[str, Any]) -> Any:
    """Build an object from a ``{"class_path": ..., "init_args": {...}}`` dict."""
    return import_class(cfg["class_path"])(**cfg.get("init_args", {}))


def import_class(class_path: str) -> type:
    """Import ``"package.module.Class"``."""
    import importlib

    module_name, cls_name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), cls_name)
