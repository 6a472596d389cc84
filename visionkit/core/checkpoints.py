"""Lightning checkpoints, read without executing code from the file; a visionkit task back from one.

Files are read with ``torch.load(weights_only=True)``. A checkpoint's task class comes from the
``_class_path`` LightningCLI stores in the hyperparameters (``visionkit fit`` checkpoints), and
only classes under ``visionkit.`` that derive from :class:`~visionkit.core.task.VisionTask` are
imported. Every problem is a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from visionkit.core.task import VisionTask
from visionkit.errors import VisionkitError

Task = TypeVar("Task", bound=VisionTask)


class CheckpointError(VisionkitError, ValueError):
    """A checkpoint that is missing, unreadable, of another task, or does not fit the model."""


@dataclasses.dataclass
class CheckpointInfo:
    """A read checkpoint: its hyperparameters (without LightningCLI's keys), weights and resume step.

    Attributes:
        path: the file.
        class_path: the task class LightningCLI recorded (``None`` when none was).
        hparams: constructor arguments of the task.
        state_dict: the weights.
        step: the logging step a run resumed from it continues at.
        flag: how messages name the file (``"--ckpt_path"``, ``"checkpoint"``).
    """

    path: Path
    class_path: str | None
    hparams: dict[str, Any]
    state_dict: dict[str, Any]
    step: int | None
    flag: str = "checkpoint"

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every tensor in the state dict."""
        return {k: tuple(v.shape) for k, v in self.state_dict.items() if hasattr(v, "shape")}

    @property
    def model_config(self) -> dict[str, Any]:
        """The model section the checkpoint's hyperparameters give (LightningCLI's ``ckpt_path`` rule)."""
        if self.class_path is None:
            return dict(self.hparams)
        return {"class_path": self.class_path, "dict_kwargs": dict(self.hparams)}

    def task_class(self) -> type[VisionTask] | None:
        """The recorded task class, imported only when it is a visionkit task (``None`` when none is recorded)."""
        if self.class_path is None:
            return None
        where = f"{self.flag} '{self.path}'"
        if not self.class_path.startswith("visionkit.") or "." not in self.class_path:
            raise CheckpointError(f"{where} names task class {self.class_path!r}; only visionkit tasks are loaded")
        module_name, name = self.class_path.rsplit(".", 1)
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as err:
            raise CheckpointError(f"{where} names task class '{self.class_path}', which does not exist") from err
        if not (isinstance(cls, type) and issubclass(cls, VisionTask)):
            raise CheckpointError(f"{where} names '{self.class_path}', which is not a visionkit task")
        return cls


def read_checkpoint(path: str | Path, flag: str = "checkpoint") -> CheckpointInfo:
    """Read a Lightning checkpoint safely (``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: missing, empty, truncated or another format, or no ``state_dict``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{flag} '{path}' does not exist; expected a Lightning .ckpt file of a previous run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader failure is reported the same way
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{flag} '{path}' is not a readable Lightning checkpoint (empty, truncated or another format: "
            f"{type(err).__name__}{': ' + first if first else ''})"
        ) from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"{flag} '{path}' holds no Lightning 'state_dict'; for a weight file use --model.init_args.checkpoint_path"
        )
    hparams = {k: v for k, v in dict(ckpt.get("hyper_parameters") or {}).items() if k != "_instantiator"}
    class_path = hparams.pop("_class_path", None)
    return CheckpointInfo(path, class_path, hparams, ckpt["state_dict"], _resume_step(ckpt), flag)


def _resume_step(ckpt: dict[str, Any]) -> int | None:
    """The logging step a run resumed from ``ckpt`` continues at (Lightning's ``_batches_that_stepped``)."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError, ValueError):
        step = ckpt.get("global_step")
        return int(step) if isinstance(step, int) else None


def check_state_dict(ckpt: CheckpointInfo, model: nn.Module, linked: tuple[str, ...] = ()) -> None:
    """Every checkpoint tensor must fit ``model``; name the ``linked`` hyperparameters that differ.

    Raises:
        CheckpointError: shapes that differ, or (when the model loads strictly) missing/unexpected keys.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    shapes = ckpt.shapes
    wrong = [k for k in shapes if k in own and own[k] != shapes[k]]
    strict = getattr(model, "strict_loading", True)
    missing = [k for k in own if k not in shapes] if strict else []
    unexpected = [k for k in shapes if k not in own] if strict else []
    if not (wrong or missing or unexpected):
        return
    hparams = getattr(model, "hparams", {})
    differ = [
        f"{attr}={ckpt.hparams[attr]} (the data gives {hparams[attr]})"
        for attr in linked
        if attr in ckpt.hparams and attr in hparams and str(ckpt.hparams[attr]) != str(hparams[attr])
    ]
    parts = [f"size mismatch {[(k, shapes[k], own[k]) for k in wrong[:2]]}"] if wrong else []
    parts += [f"missing {missing[:3]}"] if missing else []
    parts += [f"unexpected {unexpected[:3]}"] if unexpected else []
    trained = f"; it was trained with {', '.join(differ)}" if differ else ""
    raise CheckpointError(f"{ckpt.flag} '{ckpt.path}' does not fit the model: {'; '.join(parts)}{trained}")


def load_task(path: str | Path | CheckpointInfo, task_class: type[Task] | None = None, **overrides: Any) -> Task:
    """Rebuild the task saved in a Lightning checkpoint and load its weights (on CPU, in eval mode).

    Args:
        path: a ``.ckpt`` written by ``visionkit fit`` (or by a ``Trainer`` with a visionkit task),
            or the :class:`CheckpointInfo` already read from one.
        task_class: the expected task class; required when the checkpoint records none, and
            checked against the recorded one otherwise (a subclass is accepted).
        **overrides: constructor arguments that replace the saved hyperparameters.

    Raises:
        CheckpointError: unreadable file, a checkpoint of another task, or weights that do not fit.
    """
    ckpt = path if isinstance(path, CheckpointInfo) else read_checkpoint(path)
    cls = ckpt.task_class() or task_class
    where = f"{ckpt.flag} '{ckpt.path}'"
    if cls is None:
        raise CheckpointError(f"{where} records no task class; pass task_class")
    if task_class is not None and not issubclass(cls, task_class):
        raise CheckpointError(f"{where} is a {cls.__name__} checkpoint; expected a {task_class.__name__}")
    task = cls(**{**ckpt.hparams, **overrides})
    check_state_dict(ckpt, task)
    task.load_state_dict(ckpt.state_dict)
    return task.eval()
