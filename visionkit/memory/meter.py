"""Training-memory meter: what one optimisation step keeps in memory, measured deterministically.

* **Activations**: bytes of the tensors autograd saves for backward during the forward pass,
  caught with :func:`torch.autograd.graph.saved_tensors_hooks`. Each storage counts once
  (q/k/v views of one ``qkv`` output, a ReLU output that the next Linear saves again); the
  whole storage counts (a slice keeps its base alive); storages of the model's parameters and
  buffers are excluded (a frozen Linear saves its weight for the input gradient). This is
  deterministic on CPU and is the quantity side-tuning methods reduce.
* **State**: parameter + buffer bytes, gradient bytes (after ``backward``), optimizer-state
  bytes (read from ``optimizer.state`` after ``step``).
* **Peaks**: peak resident set size of the process during the step (Linux resets the
  high-water mark through ``/proc/self/clear_refs``; elsewhere it is the process lifetime peak)
  and, on CUDA, ``torch.cuda.max_memory_allocated``.

Pure torch; the Lightning callback is :class:`visionkit.callbacks.ActivationMemory`, the
side-by-side benchmark of methods :mod:`visionkit.memory.benchmark`.
All sizes are in bytes unless a name ends in ``_mib`` (MiB = 2**20 bytes).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "MIB",
    "MemoryReport",
    "SavedTensorMeter",
    "StateBytes",
    "build_memory_report",
    "cuda_peak",
    "cuda_peak_start",
    "measure_training_step",
    "model_tensors",
    "optimizer_state_bytes",
    "peak_rss_bytes",
    "reset_peak_rss",
    "state_bytes",
]

MIB = 2**20
OUTSIDE = "<outside>"  # per-module key for tensors saved outside every module of the model

_StorageKey = tuple[str, int, int]


def _storage_key(storage: torch.UntypedStorage) -> _StorageKey:
    device = storage.device
    return device.type, -1 if device.index is None else device.index, storage.data_ptr()


def _tensor_storage(t: Tensor) -> torch.UntypedStorage | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, functional wrappers
        return None


def model_tensors(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """``(parameters, buffers)`` of ``model``, each tensor once (shared ones are not repeated)."""
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers()}.values())
    return params, buffers


def module_storage_keys(modules: nn.Module | Iterable[nn.Module | Tensor]) -> set[_StorageKey]:
    """Storage keys of the given tensors and of every parameter and buffer of the given modules."""
    items: Iterable[nn.Module | Tensor] = [modules] if isinstance(modules, nn.Module) else modules
    keys = set()
    for item in items:
        tensors = [*item.parameters(), *item.buffers()] if isinstance(item, nn.Module) else [item]
        for t in tensors:
            storage = _tensor_storage(t)
            if storage is not None:
                keys.add(_storage_key(storage))
    return keys


class SavedTensorMeter:
    """Context manager summing the bytes autograd saves for backward inside it.

    Example::

        with SavedTensorMeter(model) as meter:
            loss = criterion(model(x), y)
        meter.bytes  # activation memory of this forward, bytes
        loss.backward()

    Args:
        exclude: a module, or modules and tensors, whose storages are not activations (the
            parameters and buffers of the model).
        per_module: a model whose sub-modules get forward hooks so that each saved storage is
            attributed to the innermost running module (``by_module``); adds overhead.

    Attributes:
        bytes: total bytes of distinct saved storages.
        count: number of distinct saved storages.
        packed: number of pack calls (saved tensors before de-duplication).
        skipped: saved tensors without a plain storage (not counted).
        by_module: module name -> bytes (``per_module`` only; ``"<outside>"`` outside every module).
    """

    def __init__(
        self, exclude: nn.Module | Iterable[nn.Module | Tensor] | None = None, per_module: nn.Module | None = None
    ) -> None:
        self._exclude_modules = exclude
        self._per_module = per_module
        self._excluded: set[_StorageKey] = set()
        self._sizes: dict[_StorageKey, int] = {}
        self._held: list[torch.UntypedStorage] = []
        self._owner: dict[_StorageKey, str] = {}
        self._stack: list[str] = []
        self._handles: list[Any] = []
        self._hooks: Any = None
        self.packed = 0
        self.skipped = 0

    # -- results --------------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        """Bytes of the distinct storages saved for backward."""
        return sum(self._sizes.values())

    @property
    def count(self) -> int:
        """Number of distinct saved storages."""
        return len(self._sizes)

    @property
    def by_module(self) -> dict[str, int]:
        """Module name -> saved bytes (only with ``per_module``)."""
        out: dict[str, int] = {}
        for key, size in self._sizes.items():
            name = self._owner.get(key, OUTSIDE)
            out[name] = out.get(name, 0) + size
        return out

    @property
    def per_module(self) -> bool:
        """Whether saved bytes are attributed to sub-modules (``by_module``)."""
        return self._per_module is not None

    def bytes_under(self, prefix: str) -> int:
        """Saved bytes attributed to module ``prefix`` and its descendants (``per_module`` only)."""
        if self._per_module is None:
            raise ValueError("bytes_under needs SavedTensorMeter(per_module=model)")
        return sum(b for name, b in self.by_module.items() if name == prefix or name.startswith(prefix + "."))

    # -- hooks ----------------------------------------------------------------------------------
    def _pack(self, t: Tensor) -> Tensor:
        self.packed += 1
        storage = _tensor_storage(t)
        if storage is None:
            self.skipped += 1
            return t
        key = _storage_key(storage)
        if key in self._excluded or key in self._sizes:
            return t
        # holding the storage keeps its address unique while the meter is open, so a storage freed
        # during the forward cannot be confused with a later one at the same address
        self._sizes[key] = storage.nbytes()
        self._held.append(storage)
        if self._stack:
            self._owner[key] = self._stack[-1]
        return t

    @staticmethod
    def _unpack(t: Tensor) -> Tensor:
        return t

    def _install_module_hooks(self, model: nn.Module) -> None:
        for name, module in model.named_modules():
            def pre(_m: nn.Module, _args: Any, _name: str = name) -> None:
                self._stack.append(_name)

            def post(_m: nn.Module, _args: Any, _out: Any) -> None:
                if self._stack:
                    self._stack.pop()

            self._handles.append(module.register_forward_pre_hook(pre))
            self._handles.append(module.register_forward_hook(post, always_call=True))

    def __enter__(self) -> SavedTensorMeter:
        self._sizes.clear()
        self._held.clear()
        self._owner.clear()
        self.packed = self.skipped = 0
        self._excluded = module_storage_keys(self._exclude_modules) if self._exclude_modules is not None else set()
        try:
            if self._per_module is not None:
                self._install_module_hooks(self._per_module)
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            self._hooks.__enter__()
        except BaseException:
            self._remove_module_hooks()
            raise
        return self

    def _remove_module_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._stack.clear()

    def close(self) -> None:
        """Stop metering (idempotent); the totals stay readable and the storages are released."""
        if self._hooks is not None:
            hooks, self._hooks = self._hooks, None
            hooks.__exit__(None, None, None)
        self._remove_module_hooks()
        self._held.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ---- state ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateBytes:
    """Bytes held by the model and optimizer (not counting activations)."""

    parameters: int
    buffers: int
    gradients: int
    optimizer: int
    trainable_params: int
    total_params: int

    @property
    def total(self) -> int:
        """Parameters + buffers + gradients + optimizer state, bytes."""
        return self.parameters + self.buffers + self.gradients + self.optimizer


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of every tensor in ``optimizer.state`` (moments, step counters), each storage once."""
    if optimizer is None:
        return 0
    seen: set[_StorageKey] = set()
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if not isinstance(value, Tensor):
                continue
            storage = _tensor_storage(value)
            key = _storage_key(storage) if storage is not None else ("?", 0, id(value))
            if key not in seen:
                seen.add(key)
                total += _nbytes(value)
    return total


def state_bytes(
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None = None,
    tensors: tuple[list[Tensor], list[Tensor]] | None = None,
) -> StateBytes:
    """Parameter, buffer, gradient (present ``.grad`` tensors) and optimizer-state bytes of ``model``.

    ``tensors`` (from :func:`model_tensors`) replaces the walk over ``model`` when given.
    """
    if tensors is None:
        if model is None:
            raise ValueError("state_bytes needs a model or its (parameters, buffers)")
        tensors = model_tensors(model)
    params, buffers = tensors
    return StateBytes(
        parameters=sum(_nbytes(p) for p in params),
        buffers=sum(_nbytes(b) for b in buffers),
        gradients=sum(_nbytes(p.grad) for p in params if p.grad is not None),
        optimizer=optimizer_state_bytes(optimizer),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_params=sum(p.numel() for p in params),
    )


# ---- process peaks --------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS high-water mark (Linux ``/proc/self/clear_refs``); ``False`` if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss`, bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


# ---- one training step ------------------------------------------------------------------------------------
@dataclass
class MemoryReport:
    """Memory of one training step (bytes; ``step_time_s`` in seconds).

    ``total_bytes`` = parameters + buffers + gradients + optimizer state + activations, the
    deterministic estimate of training memory (transient workspaces are not included; compare
    ``peak_rss_bytes`` / ``cuda_max_allocated_bytes``).
    """

    activation_bytes: int
    saved_storages: int
    parameter_bytes: int
    buffer_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    trainable_params: int
    total_params: int
    peak_rss_bytes: int | None = None
    cuda_max_allocated_bytes: int | None = None
    step_time_s: float | None = None
    by_module: dict[str, int] | None = None

    @property
    def state_bytes(self) -> int:
        """Parameters + buffers + gradients + optimizer state."""
        return self.parameter_bytes + self.buffer_bytes + self.gradient_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> int:
        """State + activations."""
        return self.state_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the derived totals, JSON-ready."""
        out = asdict(self)
        out["state_bytes"] = self.state_bytes
        out["total_bytes"] = self.total_bytes
        return out

    def log_values(self, prefix: str = "mem/") -> dict[str, float]:
        """Scalars for a logger, in MiB (and seconds)."""
        values = {
            f"{prefix}activations_mib": self.activation_bytes / MIB,
            f"{prefix}states_mib": self.state_bytes / MIB,
            f"{prefix}total_mib": self.total_bytes / MIB,
            f"{prefix}gradients_mib": self.gradient_bytes / MIB,
            f"{prefix}optimizer_mib": self.optimizer_bytes / MIB,
        }
        if self.peak_rss_bytes is not None:
            values[f"{prefix}peak_rss_mib"] = self.peak_rss_bytes / MIB
        if self.cuda_max_allocated_bytes is not None:
            values[f"{prefix}cuda_max_allocated_mib"] = self.cuda_max_allocated_bytes / MIB
        if self.step_time_s is not None:
            values[f"{prefix}step_time_s"] = self.step_time_s
        return values


def build_memory_report(
    meter: SavedTensorMeter,
    state: StateBytes,
    *,
    cuda_max_allocated_bytes: int | None = None,
    step_time_s: float | None = None,
) -> MemoryReport:
    """The :class:`MemoryReport` of a finished step: ``meter``'s activations, ``state``'s bytes, peak RSS now.

    The one place a report is assembled (:func:`measure_training_step` and the
    ``ActivationMemory`` callback). ``by_module`` is filled when the meter ran with ``per_module``.
    """
    return MemoryReport(
        activation_bytes=meter.bytes,
        saved_storages=meter.count,
        parameter_bytes=state.parameters,
        buffer_bytes=state.buffers,
        gradient_bytes=state.gradients,
        optimizer_bytes=state.optimizer,
        trainable_params=state.trainable_params,
        total_params=state.total_params,
        peak_rss_bytes=peak_rss_bytes(),
        cuda_max_allocated_bytes=cuda_max_allocated_bytes,
        step_time_s=step_time_s,
        by_module=meter.by_module if meter.per_module else None,
    )


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def cuda_peak_start(device: torch.device) -> bool:
    """Synchronise and reset CUDA peak statistics when ``device`` is a CUDA device."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return True


def cuda_peak(device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated`` after synchronising, bytes."""
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def measure_training_step(
    model: nn.Module,
    loss_fn: Callable[[], Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    per_module: bool = False,
    zero_grad: bool = True,
) -> MemoryReport:
    """Run one training step (forward in ``loss_fn``, backward, ``optimizer.step()``) and measure it.

    Args:
        model: the module whose parameters/buffers are state, not activations.
        loss_fn: runs the forward pass and returns the scalar loss.
        optimizer: stepped after backward; its state is measured after the step.
        per_module: attribute saved bytes to sub-modules (``MemoryReport.by_module``).
        zero_grad: ``optimizer.zero_grad(set_to_none=True)`` (or clear ``.grad``) first, so the
            gradient bytes are those of this step.
    """
    if zero_grad:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        else:
            for p in model.parameters():
                p.grad = None
    device = _model_device(model)
    tensors = model_tensors(model)  # walked once: the parameter set does not change within a step
    on_cuda = cuda_peak_start(device)
    reset_peak_rss()
    start = time.perf_counter()
    with SavedTensorMeter([*tensors[0], *tensors[1]], per_module=model if per_module else None) as meter:
        loss = loss_fn()
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
    if not loss.requires_grad:
        raise ValueError("the loss does not require grad: nothing in the model is trainable on this path")
    loss.backward()
    grads = sum(_nbytes(p.grad) for p in tensors[0] if p.grad is not None)
    if optimizer is not None:
        optimizer.step()
    cuda_bytes = cuda_peak(device) if on_cuda else None
    elapsed = time.perf_counter() - start
    state = replace(state_bytes(None, optimizer, tensors), gradients=grads)
    return build_memory_report(meter, state, cuda_max_allocated_bytes=cuda_bytes, step_time_s=elapsed)
