"""Delta inference, simulated: the multiply-accumulates a delta engine needs, and a check that it is exact.

A network with :class:`DeltaActivation` layers outputs quantised *states* ``y_t``. An engine that sends
only the changes ``y_t - y_{t-1}`` to the next layer (a blank state before the first frame) computes
the next linear layer's output by accumulation: ``W * y_t + b = (W * y_0 + b) + sum_{s=1..t} W * (y_s - y_{s-1})``.

* :func:`delta_macs` counts, per layer, the dense MACs ``fanout * numel(y_t)`` against the delta MACs
  ``fanout * nnz(y_t - y_{t-1})`` (``fanout * nnz(y_0)`` for the first frame).
* :func:`check_delta_equivalence` runs that accumulation for every Conv2d/Linear fed directly by a
  delta layer (in float64) and returns the largest difference to the dense outputs.
* :func:`time_forward_pair` times the network with its delta layers against the same network without them.

``fanout`` is the layer's :attr:`DeltaActivation.fanout`: the MACs each activation feeds in the next
layer(s) (the paper's convention: out channels x kernel area of the next conv, strides not divided out).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.errors import VisionkitError
from visionkit.methods.delta_activation.layers import DeltaActivation

__all__ = [
    "DeltaInferenceError",
    "DeltaReport",
    "ForwardTiming",
    "LayerMacs",
    "check_delta_equivalence",
    "delta_macs",
    "time_forward_pair",
]


class DeltaInferenceError(VisionkitError, ValueError):
    """A model without delta layers (or consumers of them), or a clip of the wrong shape."""


@dataclasses.dataclass
class LayerMacs:
    """MAC counts of one delta layer over a clip (all clips of the batch together).

    Attributes:
        fanout: MACs each activation feeds in the next layer(s).
        dense_macs: ``fanout * sum_t numel(y_t)`` (every activation of every frame processed).
        delta_macs: ``fanout * (nnz(y_0) + sum_{t>=1} nnz(y_t - y_{t-1}))`` (only nonzero changes processed).
        nnz: nonzero temporal deltas ``y_t - y_{t-1}``, ``t >= 1`` (the first frame excluded).
        numel: all temporal deltas, ``t >= 1``.
        first_nnz: nonzero activations of the first frame (its "wave" from a blank state).
    """

    fanout: int
    dense_macs: int = 0
    delta_macs: int = 0
    nnz: int = 0
    numel: int = 0
    first_nnz: int = 0

    @property
    def skipped_macs(self) -> int:
        """MACs a delta engine skips: ``fanout * (numel - nnz(delta))`` summed over frames."""
        return self.dense_macs - self.delta_macs

    @property
    def density(self) -> float:
        """Temporal density ``nnz / numel`` of the deltas, first frame excluded (NaN for one-frame clips)."""
        return self.nnz / self.numel if self.numel else math.nan

    @property
    def ratio(self) -> float:
        """``dense_macs / delta_macs`` (``inf`` when no delta MAC is needed)."""
        return self.dense_macs / self.delta_macs if self.delta_macs else math.inf


@dataclasses.dataclass
class DeltaReport:
    """Dense against delta MACs of every delta layer of a model over ``clips`` clips of ``frames`` frames.

    Attributes:
        layers: per delta layer (module name) its :class:`LayerMacs`, in forward order (layers never
            called last, with zero counts).
        frames: frames per clip ``T``.
        clips: clips in the batch ``B``.
    """

    layers: dict[str, LayerMacs]
    frames: int
    clips: int

    @property
    def dense_macs(self) -> int:
        """Total dense MACs (all layers, frames and clips)."""
        return sum(layer.dense_macs for layer in self.layers.values())

    @property
    def delta_macs(self) -> int:
        """Total delta MACs (all layers, frames and clips)."""
        return sum(layer.delta_macs for layer in self.layers.values())

    @property
    def skipped_macs(self) -> int:
        """Total MACs skipped by processing only the nonzero deltas."""
        return self.dense_macs - self.delta_macs

    @property
    def ratio(self) -> float:
        """``dense_macs / delta_macs`` over all layers (``inf`` when no delta MAC is needed)."""
        return self.dense_macs / self.delta_macs if self.delta_macs else math.inf

    @property
    def density(self) -> float:
        """Overall temporal density ``sum nnz / sum numel`` (not a mean of per-layer ratios), first frame excluded."""
        numel = sum(layer.numel for layer in self.layers.values())
        return sum(layer.nnz for layer in self.layers.values()) / numel if numel else math.nan

    @property
    def mac_density(self) -> float:
        """MAC-weighted temporal density ``sum fanout * nnz / sum fanout * numel``, first frame excluded."""
        numel = sum(layer.fanout * layer.numel for layer in self.layers.values())
        return sum(layer.fanout * layer.nnz for layer in self.layers.values()) / numel if numel else math.nan

    def table(self) -> str:
        """A per-layer text table (fan-out, dense MACs, delta MACs, temporal density, dense/delta) with a total row."""
        width = max([len("layer"), len("total"), *(len(name) for name in self.layers)])
        head = f"{'layer':<{width}}  {'fanout':>7}  {'dense MACs':>14}  {'delta MACs':>14}  {'density':>7}  {'dense/delta':>11}"
        rows = [head, "-" * len(head)]
        for name, layer in self.layers.items():
            rows.append(
                f"{name:<{width}}  {layer.fanout:>7}  {layer.dense_macs:>14,}  {layer.delta_macs:>14,}  "
                f"{layer.density:>7.3f}  {layer.ratio:>10.2f}x"
            )
        rows.append("-" * len(head))
        rows.append(
            f"{'total':<{width}}  {'':>7}  {self.dense_macs:>14,}  {self.delta_macs:>14,}  "
            f"{self.density:>7.3f}  {self.ratio:>10.2f}x"
        )
        return "\n".join(rows)


def _delta_modules(model: nn.Module) -> dict[str, DeltaActivation]:
    """Every :class:`DeltaActivation` of ``model`` by module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, DeltaActivation)}


def _frames(clip: Tensor) -> Tensor:
    """``clip`` ``(T, C, H, W)`` or ``(B, T, C, H, W)`` as ``(B, T, C, H, W)``."""
    if not isinstance(clip, Tensor) or clip.ndim not in (4, 5) or not clip.is_floating_point():
        got = f"{clip.dtype} {tuple(clip.shape)}" if isinstance(clip, Tensor) else type(clip).__name__
        raise DeltaInferenceError(f"clip must be a float tensor (T, C, H, W) or (B, T, C, H, W), got {got}")
    clip = clip if clip.ndim == 5 else clip[None]
    if clip.shape[0] < 1 or clip.shape[1] < 1:
        raise DeltaInferenceError(f"clip must hold at least one frame of one clip, got shape {tuple(clip.shape)}")
    return clip


def _checked_layers(model: nn.Module) -> dict[str, DeltaActivation]:
    layers = _delta_modules(model)
    if not layers:
        raise DeltaInferenceError(
            f"model ({type(model).__name__}) has no DeltaActivation layers; insert them first (insert_delta_activations)"
        )
    return layers


def _parameter_like(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU float32 when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextmanager
def _frame_mode(model: nn.Module, layers: dict[str, DeltaActivation]) -> Iterator[None]:
    """Eval mode and ``num_frames = None`` (one frame per forward) while inside; restored on exit."""
    training = {m: m.training for m in model.modules()}
    frames = {m: m.num_frames for m in layers.values()}
    model.eval()
    for m in layers.values():
        m.num_frames = None
    try:
        yield
    finally:
        for m, mode in training.items():
            m.training = mode
        for m, n in frames.items():
            m.num_frames = n


class _CallCounter:
    """Keys ``(name, k)`` for the ``k``-th call of a module within the current frame (shared modules)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def key(self, name: str) -> tuple[str, int]:
        k = self.calls.get(name, 0)
        self.calls[name] = k + 1
        return name, k

    def new_frame(self) -> None:
        self.calls.clear()


@torch.no_grad()
def delta_macs(model: nn.Module, clip: Tensor) -> DeltaReport:
    """Count dense and delta MACs of every delta layer while running ``model`` frame by frame.

    Args:
        model: a network with :class:`DeltaActivation` layers taking frames ``(B, C, H, W)``; run in eval
            mode without gradients (its modes and the layers' ``num_frames`` are restored afterwards).
        clip: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` frames (moved to the model's device and dtype).

    Returns:
        A :class:`DeltaReport`: for layer ``l`` and frame ``t``, dense MACs ``fanout_l * numel(y_t)``, delta
        MACs ``fanout_l * nnz(y_t - y_{t-1})`` for ``t >= 1`` and ``fanout_l * nnz(y_0)`` for ``t = 0``.

    Raises:
        DeltaInferenceError: no delta layers, or a clip of another shape.
    """
    layers = _checked_layers(model)
    frames = _frames(clip)
    device, dtype = _parameter_like(model)
    frames = frames.to(device=device, dtype=dtype)
    stats = {name: LayerMacs(fanout=int(m.fanout)) for name, m in layers.items()}
    order: list[str] = []  # forward order (first call)
    previous: dict[tuple[str, int], Tensor] = {}
    counter = _CallCounter()

    def count(name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            key, y, layer = counter.key(name), output.detach(), stats[name]
            if name not in order:
                order.append(name)
            layer.dense_macs += layer.fanout * y.numel()
            prev = previous.get(key)
            if prev is None:  # the first frame, from a blank state
                nnz = int(torch.count_nonzero(y))
                layer.first_nnz += nnz
            else:
                if prev.shape != y.shape:
                    raise DeltaInferenceError(f"delta layer '{name}' output changed shape between frames: "
                                              f"{tuple(prev.shape)} then {tuple(y.shape)}")
                nnz = int(torch.count_nonzero(y != prev))
                layer.nnz, layer.numel = layer.nnz + nnz, layer.numel + y.numel()
            layer.delta_macs += layer.fanout * nnz
            previous[key] = y.clone()  # later in-place ops must not change the reference state

        return hook

    handles = [m.register_forward_hook(count(name)) for name, m in layers.items()]
    try:
        with _frame_mode(model, layers):
            for t in range(frames.shape[1]):
                counter.new_frame()
                model(frames[:, t])
    finally:
        for h in handles:
            h.remove()
    order += [name for name in stats if name not in order]  # never called: all counts 0
    return DeltaReport({name: stats[name] for name in order}, frames=frames.shape[1], clips=frames.shape[0])


def _weight_only(module: nn.Module, delta: Tensor) -> Tensor:
    """The bias-free linear part of a Conv2d/Linear applied to ``delta`` (its output minus the bias)."""
    if isinstance(module, nn.Linear):
        return F.linear(delta, module.weight)
    if type(module).forward is nn.Conv2d.forward and module.padding_mode == "zeros":
        return F.conv2d(delta, module.weight, None, module.stride, module.padding, module.dilation, module.groups)
    # other padding modes or a subclass with its own forward (timm's Conv2dSame): pads are linear maps
    return module(delta) - module(torch.zeros_like(delta))


@torch.no_grad()
def check_delta_equivalence(model: nn.Module, clip: Tensor, dtype: torch.dtype = torch.float64) -> float:
    """Largest difference between dense outputs and delta-accumulated outputs of the layers fed by delta layers.

    A copy of ``model`` in ``dtype`` runs ``clip`` frame by frame (eval, no gradients). For every Conv2d
    or Linear whose input *is* a delta layer's output (same tensor), the output on ``y_t`` is compared
    with ``consumer(y_0) + sum_{s=1..t} W * (y_s - y_{s-1})``, the bias-free layer applied to the deltas.

    Args:
        model: a network with :class:`DeltaActivation` layers taking frames ``(B, C, H, W)`` (not modified).
        clip: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` frames.
        dtype: the precision of the check (float64: differences ~1e-12 and below).

    Returns:
        The maximum absolute difference over all consumers, frames and elements (0 for one-frame clips).

    Raises:
        DeltaInferenceError: no delta layers, no Conv2d/Linear fed directly by one, or a bad clip.
    """
    frames = _frames(clip)
    work = copy.deepcopy(model)
    layers = _checked_layers(work)
    device, _ = _parameter_like(work)
    work.to(dtype)
    frames = frames.to(device=device, dtype=dtype)
    outputs: list[Tensor] = []  # the delta layers' outputs of the current frame
    states: dict[tuple[str, int], list[Tensor]] = {}  # (previous input, accumulated output) per consumer call
    counter = _CallCounter()
    worst = 0.0

    def keep(module: nn.Module, inputs: Any, output: Tensor) -> None:
        outputs.append(output)

    def check(name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            nonlocal worst
            x = inputs[0] if inputs else None
            if not any(x is y for y in outputs):
                return
            key = counter.key(name)
            state = states.get(key)
            if state is None:  # first frame: the full layer (bias included) on y_0
                states[key] = [x.clone(), output.clone()]
                return
            prev, acc = state
            acc += _weight_only(module, x - prev)
            worst = max(worst, float((acc - output).abs().max()))
            state[0] = x.clone()

        return hook

    consumers = {name: m for name, m in work.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_hook(keep) for m in layers.values()]
    handles += [m.register_forward_hook(check(name)) for name, m in consumers.items()]
    try:
        with _frame_mode(work, layers):
            for t in range(frames.shape[1]):
                outputs.clear()
                counter.new_frame()
                work(frames[:, t])
    finally:
        for h in handles:
            h.remove()
    if not states:
        raise DeltaInferenceError(
            "no Conv2d or Linear takes a DeltaActivation output directly; nothing to check in delta mode"
        )
    return worst


@dataclasses.dataclass
class ForwardTiming:
    """Wall-clock seconds of alternating forwards: the network with delta layers and without them.

    Attributes:
        plain_s: seconds of each forward without delta layers.
        delta_s: seconds of each forward with delta layers.
    """

    plain_s: list[float]
    delta_s: list[float]

    @property
    def ratio(self) -> float:
        """``median(delta_s) / median(plain_s)``: the forward-time overhead of the delta layers."""
        return statistics.median(self.delta_s) / statistics.median(self.plain_s)


@torch.no_grad()
def time_forward_pair(
    with_delta: nn.Module, without: nn.Module, frames: Tensor, repeats: int, num_frames: int | None = None
) -> ForwardTiming:
    """Time ``repeats`` forward pairs (without, with delta layers, alternating) on the same input, in eval mode.

    Args:
        with_delta: the network with its delta layers.
        without: the same network without them.
        frames: input ``(B*T, C, H, W)`` (frames folded into the batch, as the training task feeds them).
        repeats: timed pairs (after one untimed warm-up pair).
        num_frames: ``T`` set on the delta layers while timing (their delta statistics are then computed,
            as in training); ``None`` times quantisation only.
    """
    if repeats < 1:
        raise DeltaInferenceError(f"repeats must be a positive number of timed forward pairs, got {repeats}")
    layers = _delta_modules(with_delta)
    saved = {m: m.num_frames for m in layers.values()}
    modes = [(m, m.training) for net in (with_delta, without) for m in net.modules()]
    sync = torch.cuda.synchronize if frames.is_cuda else (lambda: None)

    def seconds(net: nn.Module) -> float:
        sync()
        start = time.perf_counter()
        net(frames)
        sync()
        return time.perf_counter() - start

    with_delta.eval(), without.eval()
    for m in layers.values():
        m.num_frames = num_frames
    try:
        seconds(without), seconds(with_delta)  # warm-up
        plain, delta = [], []
        for _ in range(repeats):
            plain.append(seconds(without))
            delta.append(seconds(with_delta))
    finally:
        for m, n in saved.items():
            m.num_frames = n
        for m, mode in modes:
            m.training = mode
    return ForwardTiming(plain, delta)
