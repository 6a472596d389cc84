"""Insert Delta Activation Layers after the activations of any CNN, with fan-outs found by tracing one forward.

:func:`insert_delta_activations` wraps every activation module (``nn.ReLU``, ``nn.SiLU``, ...) of a model
in :class:`WithDelta` (activation, then :class:`~visionkit.methods.delta_activation.layers.DeltaActivation`);
:func:`remove_delta_activations` puts the original modules back. The loss weight of each layer, its
*fan-out*, is the number of multiply-accumulates each activation element takes part in within the layers
that consume it, found by :func:`fanouts` from forward hooks:

* a consumer is an ``nn.Conv*d`` / ``nn.Linear`` whose forward input *is* the activation's output tensor,
  possibly after parameter-free modules (pooling, flatten, dropout, identity, drop-path, a
  ``DeltaActivation``) or a squeeze-excitation gate (``x * gate(x)``), and after in-place ops that keep the
  tensor object;
* a conv adds ``kernel_h * kernel_w * out_channels / groups`` (stride, padding and dilation ignored, as in
  the official ResNet-50 weights), a Linear adds ``out_features``; the fan-out is the sum over consumers.

Limitations: hooks only see module calls, so a tensor that goes through a functional op (``x + shortcut``,
``torch.cat``, ``x.mean()``) before its consumer is lost there. An activation with no consumer found, or
an activation module called several times in one forward, gets fan-out 1 and a warning naming it.
Channels are read on dim 1 (CNN layout ``(N, C, ...)``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from timm.layers import activations as timm_act
from timm.layers import activations_me as timm_act_me
from timm.layers.adaptive_avgmax_pool import (
    AdaptiveAvgMaxPool2d,
    FastAdaptiveAvgMaxPool,
    FastAdaptiveAvgPool,
    FastAdaptiveMaxPool,
)
from timm.layers.drop import DropPath
from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
from timm.models._efficientnet_blocks import SqueezeExcite
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _LPPoolNd,
    _MaxPoolNd,
)

from visionkit.errors import ConfigValueError
from visionkit.methods.delta_activation.layers import DeltaActivation
from visionkit.tuners.inject import matching_modules, replace_modules

__all__ = [
    "ACTIVATIONS",
    "WithDelta",
    "delta_layers",
    "fanouts",
    "insert_delta_activations",
    "remove_delta_activations",
]

#: Activation classes a Delta Activation Layer goes after by default: torch's, and timm's own fallbacks
#: (used by ``get_act_layer`` when the native op is missing or in exportable / memory-efficient mode).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    timm_act.Swish,
    timm_act.HardSwish,
    timm_act.Mish,
    timm_act.GELU,
    timm_act.GELUTanh,
    timm_act_me.SwishMe,
    timm_act_me.HardSwishMe,
    timm_act_me.MishMe,
)

#: Modules whose output carries each input element to one output element (or a pooled one): followed.
_TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    _DropoutNd,
    DropPath,
    _MaxPoolNd,
    _AvgPoolNd,
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _LPPoolNd,
    FastAdaptiveAvgPool,
    FastAdaptiveMaxPool,
    FastAdaptiveAvgMaxPool,
    AdaptiveAvgMaxPool2d,
    DeltaActivation,
)

#: Squeeze-excitation gates ``x * gate(x)``: each output element is one input element, scaled.
_GATES: tuple[type[nn.Module], ...] = (SqueezeExcite, SEModule, EffectiveSEModule)


class WithDelta(nn.Module):
    """An activation followed by a Delta Activation Layer: ``forward(x) = delta(activation(x))``.

    Args:
        activation: the original activation module (kept as is, so removal restores it exactly).
        delta: the layer quantising the activation's output ``(N, C, ...)``.
        order: the activation's position in the traced forward (first call), for :func:`delta_layers`.
        fallback: why the fan-out fell back to 1 (``"no consumer"``, ``"called 3 times"``), or ``None``.
    """

    def __init__(
        self,
        activation: nn.Module,
        delta: DeltaActivation,
        order: int | None = None,
        fallback: str | None = None,
    ) -> None:
        super().__init__()
        self.activation, self.delta = activation, delta
        self.order, self.fallback = order, fallback

    def forward(self, x: Tensor) -> Tensor:
        return self.delta(self.activation(x))


@dataclass
class _Seen:
    """What the traced forward saw of one activation module."""

    name: str
    order: int = -1
    calls: int = 0
    channels: set[int] = field(default_factory=set)
    device: torch.device | None = None
    fanout: int = 0


def _consumer_macs(module: nn.Module) -> int:
    """Multiply-accumulates each input element of a conv / linear takes part in."""
    if isinstance(module, nn.Linear):
        return module.out_features
    return math.prod(module.kernel_size) * module.out_channels // module.groups


def _check_after(after: tuple[type[nn.Module], ...]) -> tuple[type[nn.Module], ...]:
    if isinstance(after, type):
        after = (after,)
    if not (isinstance(after, tuple) and after and all(isinstance(t, type) for t in after)):
        raise ConfigValueError(f"after must be a non-empty tuple of activation module classes, got {after!r}")
    return after


def _trace(model: nn.Module, example: Tensor, after: tuple[type[nn.Module], ...]) -> dict[str, _Seen]:
    """One hooked forward of ``example`` (eval mode, no grad): activations' calls, channels and fan-outs.

    Returns ``{name: _Seen}`` for the activation modules matched by ``after`` that the forward called,
    in forward order; fan-outs are raw sums (0 when no consumer was seen).
    """
    after = _check_after(after)
    if not isinstance(example, Tensor):
        raise ConfigValueError(
            f"example must be an input tensor for {type(model).__name__}, got {type(example).__name__}"
        )
    matched = matching_modules(model, after)
    if not matched:
        names = ", ".join(t.__name__ for t in after)
        raise ConfigValueError(
            f"{type(model).__name__} has no activation module to attach to (looked for {names})"
        )
    if matched[0][0] == "":
        raise ConfigValueError(
            f"the model itself is an activation ({type(model).__name__}); wrap it in a module"
        )
    seen = {id(module): _Seen(name) for name, module in matched}
    source: dict[int, tuple[Tensor, _Seen]] = {}  # id(tensor) -> (tensor kept alive, its activation)
    order = [0]

    def tracked(value: object) -> _Seen | None:
        hit = source.get(id(value)) if isinstance(value, Tensor) else None
        return hit[1] if hit is not None and hit[0] is value else None

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        first = args[0] if args else None
        if id(module) in seen:
            info = seen[id(module)]
            if not isinstance(output, Tensor) or output.ndim < 2:
                raise ConfigValueError(
                    f"activation '{info.name}' returned {getattr(output, 'shape', type(output).__name__)}; "
                    "expected a tensor (N, C, ...) with channels on dim 1"
                )
            if info.calls == 0:
                info.order, order[0] = order[0], order[0] + 1
                info.device = output.device
            info.calls += 1
            info.channels.add(int(output.shape[1]))
            source[id(output)] = (output, info)
        elif isinstance(module, (_ConvNd, nn.Linear)):
            info = tracked(first)
            if info is not None:
                info.fanout += _consumer_macs(module)
        elif isinstance(module, _TRANSPARENT + _GATES):
            info = tracked(first)
            if info is not None and isinstance(output, Tensor) and id(output) not in source:
                source[id(output)] = (output, info)

    modes = {module: module.training for module in model.modules()}
    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
        source.clear()
    called = sorted((info for info in seen.values() if info.calls), key=lambda info: info.order)
    unused = [info.name for info in seen.values() if not info.calls]
    if unused:
        warnings.warn(
            f"activations never called in the forward of the example, left out: {', '.join(unused)}",
            stacklevel=3,
        )
    return {info.name: info for info in called}


def _fallbacks(seen: dict[str, _Seen]) -> dict[str, str]:
    """``{name: reason}`` for the activations whose fan-out falls back to 1, warned about once."""
    reasons = {}
    for name, info in seen.items():
        if info.calls > 1:
            reasons[name] = f"called {info.calls} times"
        elif info.fanout == 0:
            reasons[name] = "no consumer"
    if reasons:
        listed = ", ".join(f"{name} ({why})" for name, why in reasons.items())
        warnings.warn(
            f"fan-out 1 for activations whose conv/linear consumers could not be traced: {listed}",
            stacklevel=3,
        )
    return reasons


def fanouts(
    model: nn.Module, example: Tensor, after: tuple[type[nn.Module], ...] = ACTIVATIONS
) -> dict[str, int]:
    """Fan-out of every activation module of ``model`` matched by ``after``, from one traced forward.

    Args:
        model: the network; run once on ``example`` in eval mode without grad (each module's mode is restored).
        example: an input batch, e.g. ``(1, 3, 32, 32)``; every activation output of it is held during the pass.
        after: activation module classes to report.

    Returns:
        ``{module name: fan-out}`` in forward order: multiply-accumulates each output element takes part in
        within its traced conv/linear consumers (``k_h * k_w * out_channels / groups`` per conv,
        ``out_features`` per Linear), or 1 (with a warning) for an activation called several times or
        whose consumers could not be traced.

    Raises:
        ConfigValueError: no module of ``model`` is an instance of ``after``; ``example`` is not a tensor.
    """
    seen = _trace(model, example, after)
    reasons = _fallbacks(seen)
    return {name: 1 if name in reasons else info.fanout for name, info in seen.items()}


def _threshold_for(name: str, threshold_init: float | dict[str, float]) -> float:
    """The initial step of activation ``name``: a float, or the dict entry of the longest dotted prefix."""
    if not isinstance(threshold_init, dict):
        return float(threshold_init)
    keys = [key for key in threshold_init if key == "" or name == key or name.startswith(key + ".")]
    if not keys:
        raise ConfigValueError(
            f"threshold_init has no entry for '{name}'; add its prefix or a default under key \"\""
        )
    return float(threshold_init[max(keys, key=len)])


def _check_thresholds(names: list[str], threshold_init: float | dict[str, float]) -> None:
    values = threshold_init.values() if isinstance(threshold_init, dict) else [threshold_init]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigValueError(
            f"threshold_init must be positive steps (a float or a prefix -> float dict), got {threshold_init!r}"
        )
    if isinstance(threshold_init, dict):
        unused = [k for k in threshold_init if k and not any(n == k or n.startswith(k + ".") for n in names)]
        if unused:
            raise ConfigValueError(f"threshold_init prefixes match no activation: {', '.join(unused)}")


def insert_delta_activations(
    model: nn.Module,
    example: Tensor,
    after: tuple[type[nn.Module], ...] = ACTIVATIONS,
    threshold_init: float | dict[str, float] = 0.25,
    official_gradient: bool = True,
) -> list[str]:
    """Wrap every activation of ``model`` matched by ``after`` in :class:`WithDelta`, in place.

    Each new ``DeltaActivation`` gets the channel count seen on dim 1 of the activation's output, the
    fan-out from :func:`fanouts`, and the step ``threshold_init`` (in the activation's units), put on the
    device of that output. An activation module the example's forward never calls is left alone (warned).

    Args:
        model: the network to modify.
        example: an input batch for the traced forward, e.g. ``(1, 3, 32, 32)``.
        after: activation module classes to attach to.
        threshold_init: initial step ``theta``; or ``{name prefix: step}`` where the longest dotted prefix of
            the module name wins and key ``""`` is the default (``{"": 0.25, "conv_stem": 1.0}``).
        official_gradient: the official sign-flipped step gradient (see ``DeltaActivation``).

    Returns:
        The names of the replaced activations, in forward order.

    Raises:
        ConfigValueError: no matching activation, layers already inserted, a bad ``threshold_init``, or an
            activation module called several times with different channel counts.
    """
    inserted = [name for name, module in model.named_modules() if isinstance(module, WithDelta)]
    if inserted:
        raise ConfigValueError(
            f"{type(model).__name__} already has delta activation layers (e.g. '{inserted[0]}'); remove them first"
        )
    seen = _trace(model, example, after)
    _check_thresholds(list(seen), threshold_init)
    for name, info in seen.items():
        if len(info.channels) > 1:
            raise ConfigValueError(
                f"activation '{name}' is called with {sorted(info.channels)} channels; one channel count is expected"
            )
        _threshold_for(name, threshold_init)
    reasons = _fallbacks(seen)
    by_module = {id(model.get_submodule(name)): info for name, info in seen.items()}

    def wrap(name: str, activation: nn.Module) -> nn.Module:
        info = by_module[id(activation)]
        fanout = 1 if info.name in reasons else info.fanout
        delta = DeltaActivation(
            next(iter(info.channels)),
            _threshold_for(info.name, threshold_init),
            fanout,
            official_gradient=official_gradient,
        )
        return WithDelta(activation, delta.to(info.device), info.order, reasons.get(info.name))

    replace_modules(model, lambda _name, module: id(module) in by_module, wrap)
    return list(seen)


def remove_delta_activations(model: nn.Module) -> list[str]:
    """Put the original activation modules back in place of every :class:`WithDelta`; returns their names
    (in module order; empty when there is none). The model then computes exactly what it did before insertion.
    """
    return replace_modules(model, WithDelta, lambda _name, module: module.activation)


def delta_layers(model: nn.Module) -> dict[str, DeltaActivation]:
    """``{activation name: DeltaActivation}`` of the inserted layers, in forward order (the order traced at
    insertion; module order for a ``WithDelta`` built by hand)."""
    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, WithDelta)]
    ranked = sorted(
        enumerate(wrapped), key=lambda item: (item[1][1].order is None, item[1][1].order or 0, item[0])
    )
    return {name: module.delta for _, (name, module) in ranked}
