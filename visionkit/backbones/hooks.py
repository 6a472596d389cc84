"""Record or edit the outputs of named sub-modules with forward hooks.

Both context managers resolve module names up front (an unknown name fails before any hook is
registered), always remove their hook handles on exit (also when the body raises), and count
how often each module fires: a module that fires twice in one forward (a shared module, or the
re-entry of activation-checkpoint recompute during backward) raises :class:`HookFiredTwiceError`
unless ``allow_repeat=True``. (PyTorch's default non-reentrant checkpoint stops its recompute
early, before the checkpointed module returns, so its forward hooks do not fire again; reentrant
checkpoint, or ``set_checkpoint_early_stop(False)``, re-runs them.)

A "forward" starts whenever the root ``model`` is called (a forward pre-hook on the root resets
the counters) or when :meth:`reset` is called; code that calls ``model.forward_features(x)``
directly runs one forward per ``with`` block unless it calls :meth:`reset` itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from visionkit.errors import VisionkitError

__all__ = [
    "ActivationEditor",
    "ActivationRecorder",
    "HookFiredTwiceError",
    "ModuleNameError",
    "hooks_registered",
    "resolve_modules",
]


class ModuleNameError(VisionkitError, ValueError):
    """A module name that is not in the model."""


class HookFiredTwiceError(RuntimeError):
    """A hooked module ran more than once in one forward pass."""


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map each name to ``model.get_submodule(name)``.

    Raises:
        ModuleNameError: a name is not in ``model.named_modules()``; the message lists close matches.
    """
    table = dict(model.named_modules())
    resolved = {}
    for name in names:
        if name not in table:
            close = difflib.get_close_matches(name, [n for n in table if n], n=5, cutoff=0.6)
            hint = f"; close matches: {close}" if close else f"; {len(table) - 1} sub-modules, e.g. {list(table)[1:6]}"
            raise ModuleNameError(f"no module named '{name}' in {type(model).__name__}{hint}")
        resolved[name] = table[name]
    return resolved


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor inside nested tuples, lists and dicts."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


class _HookContext:
    """Shared machinery: name resolution, per-forward fire counts, guaranteed handle removal."""

    def __init__(self, model: nn.Module, names: Iterable[str], allow_repeat: bool) -> None:
        self.model = model
        self.names = list(dict.fromkeys(names))
        if not self.names:
            raise ValueError(f"{type(self).__name__} needs at least one module name")
        self.modules = resolve_modules(model, self.names)
        self.allow_repeat = allow_repeat
        self.calls: dict[str, int] = dict.fromkeys(self.names, 0)
        self._handles: list[RemovableHandle] = []

    @property
    def active(self) -> bool:
        """Whether hooks are currently registered."""
        return bool(self._handles)

    def reset(self) -> None:
        """Start a new forward: zero the fire counters."""
        self.calls = dict.fromkeys(self.names, 0)

    def _count(self, name: str) -> None:
        self.calls[name] += 1
        if self.calls[name] > 1 and not self.allow_repeat:
            raise HookFiredTwiceError(
                f"module '{name}' fired {self.calls[name]} times in one forward (a shared module, or "
                "activation-checkpoint recompute); pass allow_repeat=True to keep every call"
            )

    def _hook(self, name: str) -> Callable[..., Any]:
        raise NotImplementedError

    def __enter__(self) -> _HookContext:
        if self._handles:
            raise RuntimeError(f"{type(self).__name__} is already active; it cannot be nested in itself")
        self.reset()
        try:
            self._handles.append(self.model.register_forward_pre_hook(lambda *_: self.reset()))
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook handle (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


class ActivationRecorder(_HookContext):
    """Record the outputs of named modules during a forward pass.

    Example::

        with ActivationRecorder(vit, ["blocks.0", "blocks.5"]) as rec:
            vit(x)
        rec["blocks.0"]  # (B, N, C), detached

    Args:
        model: the root module; names are those of ``model.named_modules()``.
        names: module names to record.
        detach: store ``output.detach()`` (default) so records do not keep the autograd graph
            alive; pass ``False`` to keep gradients flowing into consumers of the record.
        clone: store a copy, for modules whose output a later in-place op overwrites.
        allow_repeat: keep a list of every call's output instead of raising when a module fires
            more than once in one forward.
    """

    def __init__(
        self,
        model: nn.Module,
        names: str | Iterable[str],
        detach: bool = True,
        clone: bool = False,
        allow_repeat: bool = False,
    ) -> None:
        super().__init__(model, [names] if isinstance(names, str) else names, allow_repeat)
        self.detach = detach
        self.clone = clone
        self.records: dict[str, Any] = {}

    def __enter__(self) -> ActivationRecorder:
        self.records = {}
        super().__enter__()
        return self

    def reset(self) -> None:
        """Start a new forward: zero the counters and drop earlier records."""
        super().reset()
        self.records = {}

    def _store(self, tensor: Tensor) -> Tensor:
        if self.detach:
            tensor = tensor.detach()
        return tensor.clone() if self.clone else tensor

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._count(name)
            value = _map_tensors(output, self._store)
            if self.allow_repeat:
                self.records.setdefault(name, []).append(value)
            else:
                self.records[name] = value

        return hook

    def __getitem__(self, name: str) -> Any:
        if name not in self.records:
            state = "was not run" if name in self.modules else "is not recorded"
            raise KeyError(f"module '{name}' {state}; recorded: {sorted(self.records)}")
        return self.records[name]

    def __contains__(self, name: object) -> bool:
        return name in self.records


class ActivationEditor(_HookContext):
    """Replace the outputs of named modules by ``edit(output)`` during a forward pass.

    Example::

        with ActivationEditor(vit, {"blocks.2": lambda y: y * 0}):
            logits = vit(x)

    Args:
        model: the root module.
        edits: module name -> function mapping the module's output to the output used downstream
            (it may also receive a tuple/dict for modules that return those).
        allow_repeat: apply the edit on every call instead of raising when a module fires twice.
    """

    def __init__(
        self,
        model: nn.Module,
        edits: Mapping[str, Callable[[Any], Any]],
        allow_repeat: bool = False,
    ) -> None:
        super().__init__(model, edits.keys(), allow_repeat)
        self.edits = dict(edits)

    def __enter__(self) -> ActivationEditor:
        super().__enter__()
        return self

    def _hook(self, name: str) -> Callable[..., Any]:
        edit = self.edits[name]

        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            self._count(name)
            return edit(output)

        return hook


def hooks_registered(module: nn.Module) -> int:
    """Number of forward (pre-)hooks registered on ``module`` and its descendants (for leak tests)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())

