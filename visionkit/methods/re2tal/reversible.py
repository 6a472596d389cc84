"""The rewired residual recurrence of Re²TAL and its memory-saving backward, for any residual branches.

A *run* is a sequence of residual branches ``M_1..M_N`` that keep the shape of their input
``(B, ...)``. With the input duplicated, not split, ``z_{-1} = z_0 = x``::

    z_k = z_{k-2} + M_k(z_{k-1}),   k = 1..N          (forward)
    z_{k-2} = z_k - M_k(z_{k-1}),   k = N..1          (inverse)
    y = (z_{N-1} + z_N) / 2                           (run output, same shape as x)

Two modes compute the same ``y``:

* ``"reversible"``: :class:`ReversibleFunction` runs the branches without autograd and keeps only the
  last two streams ``(z_{N-1}, z_N)``, two tensors the size of ``x`` whatever ``N``. Its backward walks
  the run backwards: it recomputes ``M_k(z_{k-1})`` with autograd, differentiates it, rebuilds
  ``z_{k-2} = z_k - M_k(z_{k-1})`` and moves on, so one branch's activations are alive at a time
  (about one extra forward per branch).
* ``"vanilla"``: the same loop through plain autograd, which keeps every branch's activations; the
  reference for checks.

Under ``torch.no_grad()``, or when neither ``x`` nor a branch parameter requires grad, both modes run
the plain loop.

What the reversible backward guarantees:

* **Random masks** (dropout, drop-path, DropBlock): before each branch that has a module in train mode,
  the forward records the CPU generator state and that of the input's device (:class:`RngState`,
  ~5 KB on CPU per branch and step, not a saved tensor). The recompute runs inside
  :func:`torch.random.fork_rng` from that state, so it draws the forward's masks, and afterwards the
  caller's generators are as they were. Nothing is re-seeded: every step draws new masks, and after a
  training step the global generator states are exactly those vanilla mode leaves.
* **BatchNorm in train mode** updates its running statistics once per step, in the forward; the
  recompute normalises with the batch statistics of the rebuilt input and tracking switched off.
  Norms in eval mode need nothing.
* **Autocast**: the autocast state of the forward (the input's device type, and CPU) is re-entered
  for the recompute, whatever the state around ``backward()``.
* **Parameters**: the branch parameters that require grad are inputs of the Function and their
  gradients are returned by it (not accumulated by nested ``backward()`` calls), so they get
  gradients when ``x`` does not require grad, and gradient hooks (DDP) fire as for any op.
* Not supported: double backward / ``create_graph=True`` (raises), branches that draw random numbers
  from their own ``torch.Generator`` or outside torch (their masks are not replayed), and branches
  that modify their input in place. The backward checks that it rebuilt the run input (both streams
  ``z_{-1}``, ``z_0`` equal to ``x`` within :data:`REBUILD_TOLERANCE`) and raises
  :class:`RewireError` when not, so such a branch fails at the first backward instead of giving wrong
  gradients.

Reconstruction is a subtraction, so its error grows with depth, branch gain and lower precision
(float64 rebuilds to ~1e-15 relative with unit-gain branches; float32 to ~1e-6).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from visionkit.errors import check_choice
from visionkit.methods.re2tal.errors import RewireError

__all__ = [
    "MODES",
    "REBUILD_TOLERANCE",
    "AutocastState",
    "Branch",
    "ReversibleFunction",
    "ReversibleSequence",
    "RngState",
    "autocast_state",
    "capture_rng",
    "check_mode",
    "check_rebuilt",
    "replayed_rng",
    "reverse_streams",
    "rewired_forward",
    "rewired_streams",
    "running_stats_frozen",
]

#: ``"reversible"``: memory-saving custom backward; ``"vanilla"``: plain autograd through the same loop.
MODES = ("reversible", "vanilla")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a one-line :class:`RewireError`."""
    check_choice("mode", mode, MODES, error=RewireError)
    return mode


@dataclass(frozen=True)
class Branch:
    """One residual branch ``M_k``: ``fn(z)`` has the shape of ``z``.

    Attributes:
        fn: the branch computation.
        modules: the modules ``fn`` runs; their parameters get gradients, their BatchNorms are not
            updated twice, and any of them in train mode makes the run record the RNG state.
        name: for error messages (e.g. ``"blocks.3.mlp"``).
    """

    fn: Callable[[Tensor], Tensor]
    modules: tuple[nn.Module, ...]
    name: str = "branch"

    def __call__(self, z: Tensor) -> Tensor:
        out = self.fn(z)
        if out.shape != z.shape:
            raise RewireError(
                f"residual branch '{self.name}' maps shape {tuple(z.shape)} to {tuple(out.shape)}; "
                "a reversible branch must keep the shape of its input"
            )
        return out

    def parameters(self) -> list[nn.Parameter]:
        """The parameters of :attr:`modules`, each once."""
        return list({id(p): p for m in self.modules for p in m.parameters()}.values())

    @property
    def training(self) -> bool:
        """Whether any module the branch runs is in train mode (it may draw random masks)."""
        return any(sub.training for m in self.modules for sub in m.modules())


# ---- RNG, autocast and norm state of the forward, replayed in the recompute -------------------------------
@dataclass(frozen=True)
class RngState:
    """Generator states before one branch: CPU, and the input's device when it is not the CPU."""

    cpu: Tensor
    device: torch.device | None = None
    device_state: Tensor | None = None


def capture_rng(device: torch.device) -> RngState:
    """The CPU generator state and, for a non-CPU ``device``, that device's generator state."""
    if device.type == "cpu":
        return RngState(torch.get_rng_state())
    module: Any = torch.get_device_module(device.type)
    return RngState(torch.get_rng_state(), device, module.get_rng_state(device))


@contextlib.contextmanager
def replayed_rng(state: RngState) -> Iterator[None]:
    """Run the body from the recorded generator states; the caller's generators are restored after."""
    devices = [] if state.device is None else [state.device]
    device_type = "cpu" if state.device is None else state.device.type
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        torch.set_rng_state(state.cpu)
        if state.device is not None:
            module: Any = torch.get_device_module(state.device.type)
            module.set_rng_state(state.device_state, state.device)
        yield


@dataclass(frozen=True)
class AutocastState:
    """Autocast settings of the forward: for the input's device type and, when that is not CPU, for CPU."""

    device_type: str
    enabled: bool
    dtype: torch.dtype
    cpu_enabled: bool
    cpu_dtype: torch.dtype
    cache_enabled: bool

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Autocast exactly as recorded (enabled or disabled), whatever the surrounding state."""
        with contextlib.ExitStack() as stack:
            if self.device_type != "cpu":
                stack.enter_context(torch.autocast(
                    self.device_type, dtype=self.dtype, enabled=self.enabled, cache_enabled=self.cache_enabled))
            stack.enter_context(torch.autocast(
                "cpu", dtype=self.cpu_dtype, enabled=self.cpu_enabled, cache_enabled=self.cache_enabled))
            yield


def autocast_state(device_type: str) -> AutocastState:
    """The current autocast settings for ``device_type`` (and CPU)."""
    return AutocastState(
        device_type=device_type,
        enabled=torch.is_autocast_enabled(device_type),
        dtype=torch.get_autocast_dtype(device_type),
        cpu_enabled=torch.is_autocast_enabled("cpu"),
        cpu_dtype=torch.get_autocast_dtype("cpu"),
        cache_enabled=torch.is_autocast_cache_enabled(),
    )


@contextlib.contextmanager
def running_stats_frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Train-mode BatchNorms under ``modules`` normalise with batch statistics and update nothing."""
    norms = [m for root in modules for m in root.modules()
             if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


# ---- the recurrence -----------------------------------------------------------------------------------------
def rewired_streams(x: Tensor, branches: Sequence[Branch]) -> tuple[Tensor, Tensor]:
    """``(z_{N-1}, z_N)`` of the rewired recurrence from ``z_{-1} = z_0 = x`` (plain autograd, if enabled)."""
    prev = last = x
    for branch in branches:
        prev, last = last, prev + branch(last)
    return prev, last


def reverse_streams(prev: Tensor, last: Tensor, branches: Sequence[Branch]) -> tuple[Tensor, Tensor]:
    """``(z_{-1}, z_0)`` rebuilt from ``(z_{N-1}, z_N)`` by ``z_{k-2} = z_k - M_k(z_{k-1})``, without grad.

    Both are the run input ``x`` up to rounding. Branches must be deterministic (eval mode, or no
    random modules): this draws fresh masks.
    """
    with torch.no_grad():
        for branch in reversed(branches):
            prev, last = last - branch(prev), prev
    return prev, last


class ReversibleFunction(torch.autograd.Function):
    """``(x, branches, param_index, *params) -> (z_{N-1}, z_N)``, keeping only the two output streams.

    ``params`` are the branch parameters that require grad; ``param_index[k]`` lists the positions in
    ``params`` of branch ``k``'s parameters. Use :func:`rewired_forward` rather than calling this.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, branches: tuple[Branch, ...], param_index: tuple[tuple[int, ...], ...], *params: Tensor
    ) -> tuple[Tensor, Tensor]:
        rng: list[RngState | None] = []
        prev = last = x
        for branch in branches:
            rng.append(capture_rng(x.device) if branch.training else None)
            prev, last = last, prev + branch(last)
        if prev is x:  # a single branch: z_0 is the input itself
            prev = x.clone()
        ctx.branches, ctx.param_index, ctx.params, ctx.rng = branches, param_index, params, rng
        ctx.autocast = autocast_state(x.device.type)
        ctx.save_for_backward(prev, last)
        return prev, last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_prev: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        prev, last = ctx.saved_tensors
        g_prev = torch.zeros_like(prev) if grad_prev is None else grad_prev
        g_last = torch.zeros_like(last) if grad_last is None else grad_last
        params: tuple[Tensor, ...] = ctx.params
        param_grads: list[Tensor | None] = [None] * len(params)
        for k in range(len(ctx.branches) - 1, -1, -1):
            # state (z_{k-1}, z_k) with dL/dz_{k-1} = g_prev, dL/dz_k = g_last
            branch, index, state = ctx.branches[k], ctx.param_index[k], ctx.rng[k]
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.enable_grad())
                stack.enter_context(ctx.autocast.entered())
                stack.enter_context(running_stats_frozen(branch.modules))
                if state is not None:
                    stack.enter_context(replayed_rng(state))
                leaf = prev.detach().requires_grad_(True)
                out = branch(leaf)
            grads = torch.autograd.grad(
                out, [leaf, *(params[i] for i in index)], g_last.to(out.dtype), allow_unused=True)
            with torch.no_grad():
                before = last - out  # z_{k-2}
            for i, g in zip(index, grads[1:], strict=True):
                if g is not None:
                    param_grads[i] = g if param_grads[i] is None else param_grads[i] + g
            input_grad = g_prev if grads[0] is None else g_prev + grads[0]
            prev, last = before, prev
            g_prev, g_last = g_last, input_grad
            del out, leaf, grads
        check_rebuilt(prev, last, ctx.branches)
        grad_x = g_prev + g_last if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, *param_grads)


#: Largest relative error ``max|z_{-1} - z_0| / max|z_0|`` of the rebuilt input the backward accepts, by stream
#: dtype (float64/float32 rebuild unit-gain branches to ~1e-15/~1e-6; bf16/fp16 streams round at ~1e-2).
REBUILD_TOLERANCE = {torch.float64: 1e-3, torch.float32: 1e-3, torch.bfloat16: 0.1, torch.float16: 0.1}


def check_rebuilt(first: Tensor, second: Tensor, branches: Sequence[Branch]) -> None:
    """Check that the backward rebuilt the run input: both streams ``(z_{-1}, z_0)`` must equal ``x``.

    They differ when a branch draws random numbers the RNG replay does not cover (its own
    ``torch.Generator``, numpy, Python ``random``), modifies its input in place, or amplifies the
    subtraction's rounding (large branch gain, low precision). The gradients would then be wrong, so this
    raises instead.

    Raises:
        RewireError: the relative error is above :data:`REBUILD_TOLERANCE` for the streams' dtype.
    """
    with torch.no_grad():
        scale = float(second.abs().amax())
        error = float((first - second).abs().amax()) / (scale if scale > 0 else 1.0)
    tolerance = REBUILD_TOLERANCE.get(first.dtype, 1e-3)
    if not error <= tolerance:  # also catches nan
        names = f"'{branches[0].name}'" + (f" ... '{branches[-1].name}'" if len(branches) > 1 else "")
        raise RewireError(
            f"the reversible run {names} did not rebuild its input in the backward (relative error {error:.3g}, "
            f"tolerance {tolerance:g}): a branch draws random numbers the RNG replay can't cover (its own "
            "torch.Generator, numpy or Python random), changes its input in place, or amplifies rounding; "
            "put that module in eval mode or rewire the model with mode='vanilla'")


def rewired_forward(x: Tensor, branches: Sequence[Branch], mode: str = "reversible") -> Tensor:
    """The run output ``y = (z_{N-1} + z_N) / 2``, shape of ``x``, computed in ``mode`` (:data:`MODES`).

    Raises:
        RewireError: an unknown mode, no branch, or a branch that changes the shape.
    """
    check_mode(mode)
    if not branches:
        raise RewireError("a reversible run needs at least one residual branch, got none")
    branches = tuple(branches)
    if mode == "reversible" and torch.is_grad_enabled():
        params: list[nn.Parameter] = []
        position: dict[int, int] = {}
        index = []
        for branch in branches:
            trainable = [p for p in branch.parameters() if p.requires_grad]
            for p in trainable:
                if id(p) not in position:
                    position[id(p)] = len(params)
                    params.append(p)
            index.append(tuple(position[id(p)] for p in trainable))
        if x.requires_grad or params:
            prev, last = ReversibleFunction.apply(x, branches, tuple(index), *params)
            return (prev + last) / 2
    prev, last = rewired_streams(x, branches)
    return (prev + last) / 2


class ReversibleSequence(nn.Module):
    """A reversible run over arbitrary residual branch modules (children ``branches.0`` ...).

    ``forward(x)``: ``(B, ...) -> (B, ...)``, the rewired output of ``x + M_1 + ... + M_N``'s branches.
    For timm models use :func:`visionkit.methods.re2tal.rewire`, which keeps the original module names.
    """

    def __init__(self, branches: Sequence[nn.Module], mode: str = "reversible") -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.mode = check_mode(mode)

    def branch_views(self) -> list[Branch]:
        """One :class:`Branch` per child module."""
        return [Branch(m, (m,), f"branches.{i}") for i, m in enumerate(self.branches)]

    def forward(self, x: Tensor) -> Tensor:
        return rewired_forward(x, self.branch_views(), check_mode(self.mode))

    def streams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_{N-1}, z_N)`` through plain autograd."""
        return rewired_streams(x, self.branch_views())

    def inverse(self, prev: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_{-1}, z_0)`` rebuilt from ``(z_{N-1}, z_N)`` (:func:`reverse_streams`)."""
        return reverse_streams(prev, last, self.branch_views())

    def extra_repr(self) -> str:
        return f"mode='{self.mode}'"
