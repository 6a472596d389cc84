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
    """The first free ``version_N`` index under ``save_dir/name`` (0 when the folder is new); creates nothing."""
    from visionkit.utils.runs import taken_indices

    return max(taken_indices(Path(save_dir) / name, "version_"), default=-1) + 1


def run_version(save_dir: str | Path, name: str) -> str:
    """A run folder name for a new run: claimed atomically on rank zero, only computed on other ranks.

    Only rank zero writes to the run folder (other ranks get it broadcast by Lightning), so only
    rank zero creates it; racing processes each get their own ``version_N``.
    """
    from visionkit.utils.runs import claim_version_dir, global_rank

    if global_rank() != 0:
        return f"version_{next_version(save_dir, name)}"
    return claim_version_dir(save_dir, name).name


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
    """Callbacks every run gets, by CLI key: progress bar, learning-rate monitor, parameter report, images,
    summary, predictions (``predict`` writes ``predictions.csv``).

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
        "run_summary": {"class_path": "visionkit.callbacks.RunSummary"},
        "prediction_writer": {"class_path": "visionkit.callbacks.PredictionWriter"},
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

    Its run folder ``<save_dir>/<name>/version_N`` is claimed (created) here, so trainers built
    at the same time never share one.

    Args:
        save_dir: root folder of the run folders.
        name: experiment name (a sub-folder of ``save_dir``).
        monitor: metric that picks the best checkpoint.
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        **overrides: any ``lightning.Trainer`` argument; ``logger`` or ``callbacks`` given here
            replace the defaults.
    """
    from lightning.pytorch import Trainer

    from visionkit.callbacks.checkpoint import RunCheckpoint

    kwargs = trainer_defaults()
    version = run_version(save_dir, name)
    loggers = []
    for cfg in logger_configs(save_dir, name):
        cfg["init_args"]["version"] = version
        loggers.append(instantiate(cfg))
    callbacks = [
        instantiate(cfg)
        for key, cfg in callback_configs().items()
        if key != "progress_bar" or overrides.get("enable_progress_bar", True)
    ]
    callbacks.append(RunCheckpoint(**checkpoint_kwargs(monitor, mode)))
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
