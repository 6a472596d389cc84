"""Load a visionkit task from a Lightning checkpoint without executing code from the file.

The checkpoint is read with ``torch.load(weights_only=True)``; its task class comes from the
``_class_path`` LightningCLI stores in the hyperparameters (``visionkit fit`` checkpoints), and
only classes under ``visionkit.`` that derive from :class:`~visionkit.core.task.VisionTask` are
imported. Every problem is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch

from visionkit.core.task import VisionTask
from visionkit.errors import VisionkitError

Task = TypeVar("Task", bound=VisionTask)

#: hyperparameter keys LightningCLI adds for its own re-instantiation.
CLI_KEYS = ("_class_path", "_instantiator")


class CheckpointError(VisionkitError, ValueError):
    """A checkpoint that is missing, unreadable, of another task, or does not fit the task."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a Lightning ``.ckpt`` (``state_dict`` and ``hyper_parameters`` checked).

    Raises:
        CheckpointError: missing, empty, truncated or not a Lightning checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated zip, random bytes, pickled code: all unreadable
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be read as a Lightning checkpoint ({first[:200]})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint '{path}' holds no 'state_dict'; expected a Lightning .ckpt written by visionkit")
    return ckpt


def checkpoint_task_class(ckpt: dict[str, Any], path: str | Path) -> type[VisionTask] | None:
    """The task class recorded in a checkpoint (``None`` when it records none).

    Raises:
        CheckpointError: the recorded class is outside visionkit or not a task.
    """
    import importlib

    class_path = (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if class_path is None:
        return None
    if not isinstance(class_path, str) or not class_path.startswith("visionkit.") or "." not in class_path:
        raise CheckpointError(f"checkpoint '{path}' names task class {class_path!r}; only visionkit tasks are loaded")
    module_name, name = class_path.rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"checkpoint '{path}' names task class '{class_path}', which does not exist") from err
    if not (isinstance(cls, type) and issubclass(cls, VisionTask)):
        raise CheckpointError(f"checkpoint '{path}' names '{class_path}', which is not a visionkit task")
    return cls


def load_task(path: str | Path, task_class: type[Task] | None = None, **overrides: Any) -> Task:
    """Rebuild the task saved in a Lightning checkpoint and load its weights (on CPU, in eval mode).

    Args:
        path: a ``.ckpt`` written by ``visionkit fit`` (or by a ``Trainer`` with a visionkit task).
        task_class: the expected task class; required when the checkpoint records none, and
            checked against the recorded one otherwise (a subclass is accepted).
        **overrides: constructor arguments that replace the saved hyperparameters.

    Raises:
        CheckpointError: unreadable file, a checkpoint of another task, or weights that do not fit.
    """
    ckpt = read_checkpoint(path)
    recorded = checkpoint_task_class(ckpt, path)
    cls = recorded or task_class
    if cls is None:
        raise CheckpointError(f"checkpoint '{path}' records no task class; pass task_class")
    if task_class is not None and not issubclass(cls, task_class):
        raise CheckpointError(f"checkpoint '{path}' is a {cls.__name__} checkpoint; expected a {task_class.__name__}")
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if k not in CLI_KEYS}
    hparams.update(overrides)
    task = cls(**hparams)
    try:
        result = task.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as err:  # size mismatch: a head for another number of classes, another width
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
        raise CheckpointError(f"checkpoint '{path}' does not fit {cls.__name__}: {(lines or [str(err)])[0][:240]}") from err
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {cls.__name__}: missing {list(result.missing_keys)[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}"
        )
    return task.eval()
