"""``convert(model)``: turn a CNN into a layer-masked one in place (state-dict keys unchanged).

Every module of the model must have a rule, keyed by its exact class:

* **masked layers** (Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, adaptive pools) become the
  subclasses in :mod:`.layers`;
* **position-wise layers** (activations, dropout, drop-path, LayerNorm over channels, Linear
  over channels-last maps, timm's BatchNormAct2d) become subclasses that apply the layer to the
  values and pass the mask on;
* **wrapped modules** (timm VGG's ``ConvMlp``, whose forward calls a torch function itself)
  become subclasses whose masked forward re-implements theirs with masked steps; their
  children are converted as well;
* **transparent modules** (``nn.Sequential``, residual blocks, stages, heads and model roots
  whose ``forward`` only chains sub-modules and uses ``+``, ``*``, ``mean`` and ``permute`` on
  activations) are kept and walked into.

A module without a rule stops the conversion before anything is changed, with an error naming
its path and type: nothing is ever silently left unmasked. The root's class is swapped for a
subclass whose ``forward(x, keep_mask=None)`` starts the masked pass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.errors import VisionkitError
from visionkit.methods.layer_masking.layers import (
    FILLS,
    LayerMaskingError,
    MaskedAdaptiveAvgPool2d,
    MaskedAdaptiveMaxPool2d,
    MaskedAvgPool2d,
    MaskedBatchNorm2d,
    MaskedConv2d,
    MaskedMap,
    MaskedMaxPool2d,
    MaskedModule,
    _check_eval_norm,
    as_keep_mask,
    convmlp_forward,
    hide,
)
from visionkit.tuners.inject import replace_modules

__all__ = [
    "LayerMaskedModel",
    "UnsupportedLayerError",
    "convert",
    "is_layer_masked",
    "set_fill",
    "supported_types",
    "unsupported_modules",
    "use_fill",
]


class UnsupportedLayerError(VisionkitError, TypeError):
    """A module that layer masking has no rule for (the message names its path and type)."""


@dataclass(frozen=True)
class Rule:
    """How one module class is converted.

    Attributes:
        kind: ``"masked"`` (swap to ``masked_cls``), ``"pointwise"`` (apply per position),
            ``"plain"`` (only valid after a global pool), ``"permute"`` (torchvision's Permute),
            ``"wrapper"`` (swap to a subclass running ``masked_forward``; walk into the children)
            or ``"transparent"`` (keep, walk into the children).
        masked_cls: the subclass for ``"masked"`` rules.
        layout: for pointwise rules, the layout the layer works in: ``"any"``, ``"nchw"``
            (normalises over dim 1) or ``"nhwc"`` (acts on the last dim).
        stats: a norm layer that must run on running statistics (eval mode).
        check: returns a reason when a particular instance cannot be converted.
        masked_forward: for ``"wrapper"`` rules, ``(module, masked_map) -> output``.
    """

    kind: str
    masked_cls: type | None = None
    layout: str = "any"
    stats: bool = False
    check: Callable[[nn.Module], str | None] | None = None
    masked_forward: Callable[[nn.Module, MaskedMap], Any] | None = None


def _conv_check(m: nn.Module) -> str | None:
    if m.padding_mode != "zeros":
        return f"padding_mode='{m.padding_mode}' (only zero padding is supported)"
    return None


def _maxpool_check(m: nn.Module) -> str | None:
    return "return_indices=True is not supported" if m.return_indices else None


def _layernorm_check(m: nn.Module) -> str | None:
    shape = tuple(m.normalized_shape)
    return None if len(shape) == 1 else f"normalized_shape {shape} spans more than the channel dim"


def _no_checkpointing(m: nn.Module) -> str | None:
    return "gradient checkpointing is on (call set_grad_checkpointing(False))" if getattr(m, "grad_checkpointing", False) else None


_TORCH_ACTS = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish",
               "Hardsigmoid", "Sigmoid", "Tanh", "Softplus", "Hardtanh")
_TIMM_ACTS = ("Swish", "Mish", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "HardMish", "GELU", "GELUTanh",
              "QuickGELU", "PReLU")

RULES: dict[str, Rule] = {
    # masked layers
    "torch.nn.modules.conv.Conv2d": Rule("masked", MaskedConv2d, check=_conv_check),
    "torch.nn.modules.batchnorm.BatchNorm2d": Rule("masked", MaskedBatchNorm2d),
    "torch.nn.modules.pooling.MaxPool2d": Rule("masked", MaskedMaxPool2d, check=_maxpool_check),
    "torch.nn.modules.pooling.AvgPool2d": Rule("masked", MaskedAvgPool2d),
    "torch.nn.modules.pooling.AdaptiveAvgPool2d": Rule("masked", MaskedAdaptiveAvgPool2d),
    "torch.nn.modules.pooling.AdaptiveMaxPool2d": Rule("masked", MaskedAdaptiveMaxPool2d, check=_maxpool_check),
    # position-wise layers
    **{f"torch.nn.modules.activation.{n}": Rule("pointwise") for n in _TORCH_ACTS},
    **{f"timm.layers.activations.{n}": Rule("pointwise") for n in _TIMM_ACTS},
    "torch.nn.modules.linear.Identity": Rule("pointwise"),
    "torch.nn.modules.dropout.Dropout": Rule("pointwise"),
    "torch.nn.modules.dropout.Dropout2d": Rule("pointwise", layout="nchw"),
    "torch.nn.modules.batchnorm.SyncBatchNorm": Rule("pointwise", layout="nchw", stats=True),
    "torch.nn.modules.normalization.LayerNorm": Rule("pointwise", layout="nhwc", check=_layernorm_check),
    "torch.nn.modules.linear.Linear": Rule("pointwise", layout="nhwc"),
    "timm.layers.linear.Linear": Rule("pointwise", layout="nhwc"),
    "timm.layers.norm.LayerNorm": Rule("pointwise", layout="nhwc", check=_layernorm_check),
    "timm.layers.norm.LayerNorm2d": Rule("pointwise", layout="nchw", check=_layernorm_check),
    "timm.layers.norm_act.BatchNormAct2d": Rule("pointwise", layout="nchw", stats=True),
    "timm.layers.drop.DropPath": Rule("pointwise"),
    "torchvision.ops.stochastic_depth.StochasticDepth": Rule("pointwise"),
    "torchvision.ops.misc.FrozenBatchNorm2d": Rule("pointwise", layout="nchw"),
    "torchvision.models.convnext.LayerNorm2d": Rule("pointwise", layout="nchw", check=_layernorm_check),
    # only after a global pool
    "torch.nn.modules.flatten.Flatten": Rule("plain"),
    "torchvision.ops.misc.Permute": Rule("permute"),
    # transparent: forward chains sub-modules (+, *, mean, amax, permute on activations)
    **{f"torch.nn.modules.container.{n}": Rule("transparent") for n in ("Sequential", "ModuleList", "ModuleDict")},
    "timm.layers.mlp.Mlp": Rule("transparent"),
    "timm.layers.conv_bn_act.ConvNormAct": Rule("transparent"),
    "timm.layers.squeeze_excite.SEModule": Rule("transparent"),
    "timm.layers.classifier.ClassifierHead": Rule("transparent"),
    "timm.layers.classifier.NormMlpClassifierHead": Rule("transparent"),
    **{f"timm.layers.adaptive_avgmax_pool.{n}": Rule("transparent") for n in (
        "SelectAdaptivePool2d", "FastAdaptiveAvgPool", "FastAdaptiveMaxPool", "FastAdaptiveAvgMaxPool",
        "FastAdaptiveCatAvgMaxPool")},
    "timm.models.resnet.ResNet": Rule("transparent", check=_no_checkpointing),
    "timm.models.resnet.BasicBlock": Rule("transparent"),
    "timm.models.resnet.Bottleneck": Rule("transparent"),
    **{f"timm.models._efficientnet_blocks.{n}": Rule("transparent") for n in (
        "SqueezeExcite", "ConvBnAct", "DepthwiseSeparableConv", "InvertedResidual", "EdgeResidual")},
    "timm.models.efficientnet.EfficientNet": Rule("transparent", check=_no_checkpointing),
    "timm.models.mobilenetv3.MobileNetV3": Rule("transparent", check=_no_checkpointing),
    "timm.models.regnet.RegNet": Rule("transparent"),
    "timm.models.regnet.RegStage": Rule("transparent", check=_no_checkpointing),
    "timm.models.regnet.Bottleneck": Rule("transparent"),
    "timm.models.regnet.PreBottleneck": Rule("transparent"),
    "timm.models.convnext.ConvNeXt": Rule("transparent"),
    "timm.models.convnext.ConvNeXtStage": Rule("transparent", check=_no_checkpointing),
    "timm.models.convnext.ConvNeXtBlock": Rule("transparent"),
    "timm.models.convnext.Downsample": Rule("transparent"),
    "timm.models.vgg.VGG": Rule("transparent", check=_no_checkpointing),
    # wrapped: forward calls F.adaptive_avg_pool2d itself (maps smaller than the 7x7 fc1, e.g. < 224 px)
    "timm.models.vgg.ConvMlp": Rule("wrapper", masked_forward=convmlp_forward),
    "torchvision.models.resnet.ResNet": Rule("transparent"),
    "torchvision.models.resnet.BasicBlock": Rule("transparent"),
    "torchvision.models.resnet.Bottleneck": Rule("transparent"),
    "torchvision.models.vgg.VGG": Rule("transparent"),
    "torchvision.models.efficientnet.EfficientNet": Rule("transparent"),
    "torchvision.models.efficientnet.MBConv": Rule("transparent"),
    "torchvision.models.efficientnet.FusedMBConv": Rule("transparent"),
    "torchvision.models.mobilenetv3.MobileNetV3": Rule("transparent"),
    "torchvision.models.mobilenetv3.InvertedResidual": Rule("transparent"),
    "torchvision.ops.misc.Conv2dNormActivation": Rule("transparent"),
    "torchvision.ops.misc.SqueezeExcitation": Rule("transparent"),
    "torchvision.ops.misc.MLP": Rule("transparent"),
    "torchvision.models.regnet.RegNet": Rule("transparent"),
    "torchvision.models.regnet.SimpleStemIN": Rule("transparent"),
    "torchvision.models.regnet.ResBottleneckBlock": Rule("transparent"),
    "torchvision.models.regnet.BottleneckTransform": Rule("transparent"),
    "torchvision.models.regnet.AnyStage": Rule("transparent"),
    "torchvision.models.convnext.ConvNeXt": Rule("transparent"),
    "torchvision.models.convnext.CNBlock": Rule("transparent"),
}


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, the key of :data:`RULES`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def supported_types() -> list[str]:
    """Every module class layer masking converts, by qualified name."""
    return sorted(RULES)


# --------------------------------------------------------------------------------------------
# Converted classes
# --------------------------------------------------------------------------------------------
_DYNAMIC: dict[type, type] = {}


def _class_name(prefix: str, base: type) -> str:
    """A deterministic, unique class name: ``prefix`` + the base's dotted path with underscores."""
    return prefix + "_" + qualified_name(base).replace(".", "_")


def _register(cls: type) -> type:
    """Expose a generated class as a module attribute so that pickling can find it by name."""
    setattr(sys.modules[__name__], cls.__qualname__, cls)
    return cls


def _masked_class(base: type, forward: Callable[..., Any], doc: str | None = None) -> type:
    """``Masked_<base path>(base, MaskedModule)`` with ``forward``, registered and cached per base."""
    name = _class_name("Masked", base)
    attrs = {"forward": forward, "__module__": __name__, "__qualname__": name}
    if doc is not None:
        attrs["__doc__"] = doc
    _DYNAMIC[base] = _register(type(name, (base, MaskedModule), attrs))
    return _DYNAMIC[base]


def _pointwise_class(base: type, rule: Rule) -> type:
    if base in _DYNAMIC:
        return _DYNAMIC[base]
    base_forward = base.forward

    def forward(self: nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, MaskedMap):
            return base_forward(self, x, *args, **kwargs)
        if rule.layout != "any" and x.channels_last != (rule.layout == "nhwc"):
            want = "NHWC (channels-last)" if rule.layout == "nhwc" else "NCHW"
            raise LayerMaskingError(f"layer masking: {self._lm_label()} needs an {want} masked map")
        if rule.stats:
            _check_eval_norm(self, self._lm_label())
        return MaskedMap(base_forward(self, x.values, *args, **kwargs), x.keep, x.channels_last)

    return _masked_class(base, forward, f"{base.__name__} applied per position to masked maps.")


def _wrapper_class(base: type, rule: Rule) -> type:
    if base in _DYNAMIC:
        return _DYNAMIC[base]
    base_forward, masked_forward = base.forward, rule.masked_forward
    assert masked_forward is not None

    def forward(self: nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, MaskedMap):
            return base_forward(self, x, *args, **kwargs)
        return masked_forward(self, x, *args, **kwargs)

    return _masked_class(base, forward, f"{base.__name__} with a masked forward of its own steps.")


def _plain_class(base: type, kind: str) -> type:
    if base in _DYNAMIC:
        return _DYNAMIC[base]
    base_forward = base.forward

    def forward(self: nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, MaskedMap):
            return base_forward(self, x, *args, **kwargs)
        if kind == "permute":
            return x.permute(self.dims)
        raise LayerMaskingError(
            f"layer masking: {self._lm_label()} received a spatial masked map; it needs a (masked) global pool before it"
        )

    return _masked_class(base, forward)


class LayerMaskedModel:
    """Mixin of a converted model's root: ``forward(x, keep_mask=None)``.

    Without a mask (or with an all-ones mask) the output equals the plain model's. With a mask,
    hidden pixels are zeroed (they never reach the network), and the keep mask travels through
    every layer; a dense output (no global pool) is returned with zeros at hidden positions.
    """

    def forward(self, x: Tensor, keep_mask: Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        """Plain forward, or a layer-masked one when ``keep_mask`` (1 = visible) is given.

        Args:
            x: images ``(B, C, H, W)``.
            keep_mask: ``(B, 1, H, W)``, ``(B, H, W)`` or ``(H, W)``; bool or float in {0, 1}.

        Raises:
            LayerMaskingError: a mask of the wrong shape or with non-binary values.
        """
        if keep_mask is None:
            return super().forward(x, *args, **kwargs)  # type: ignore[misc]
        if isinstance(x, MaskedMap):
            raise LayerMaskingError("pass plain images with keep_mask, not a MaskedMap")
        keep = as_keep_mask(keep_mask, x)
        out = super().forward(MaskedMap(hide(x, keep), keep), *args, **kwargs)  # type: ignore[misc]
        if isinstance(out, MaskedMap):
            out = out.permute(0, 3, 1, 2) if out.channels_last else out
            return out.hidden_zeroed()
        return out


def _root_class(base: type) -> type:
    if base in _DYNAMIC:
        return _DYNAMIC[base]
    name = _class_name("LayerMasked", base)
    cls = type(name, (LayerMaskedModel, base), {"__module__": __name__, "__qualname__": name,
                                                 "__doc__": f"Layer-masked {base.__name__}: forward(x, keep_mask=None)."})
    _DYNAMIC[base] = _register(cls)
    return cls


def is_layer_masked(model: nn.Module) -> bool:
    """Whether ``model`` was converted (its root takes ``keep_mask``)."""
    return isinstance(model, LayerMaskedModel)


# --------------------------------------------------------------------------------------------
# Checking and converting
# --------------------------------------------------------------------------------------------
def _rule(module: nn.Module) -> Rule | None:
    return RULES.get(qualified_name(type(module)))


def _extra_rules(transparent: Sequence[type | str]) -> dict[str, Rule]:
    return {t if isinstance(t, str) else qualified_name(t): Rule("transparent") for t in transparent}


def unsupported_modules(model: nn.Module, transparent: Sequence[type | str] = ()) -> list[tuple[str, str, str]]:
    """``(path, type, reason)`` for every module that :func:`convert` cannot handle ('' = the root).

    Args:
        transparent: extra module classes (or qualified names) whose ``forward`` only chains
            sub-modules and uses ``+``, ``*``, ``mean`` or ``permute`` on activations.
    """
    problems: list[tuple[str, str, str]] = []
    extra = _extra_rules(transparent)

    def visit(module: nn.Module, path: str, pointwise_only: bool) -> None:
        label = qualified_name(type(module))
        if isinstance(module, LayerMaskedModel):
            for name, child in module.named_children():
                visit(child, f"{path}.{name}" if path else name, False)
            return
        if isinstance(module, MaskedModule):
            return
        rule = extra.get(label) or _rule(module)
        if rule is None:
            problems.append((path, label, "no layer-masking rule for this module type"))
            for name, child in module.named_children():  # report what is inside as well
                visit(child, f"{path}.{name}" if path else name, pointwise_only)
            return
        if pointwise_only and rule.kind != "pointwise":
            problems.append((path, label, "sits inside a position-wise layer but is not position-wise"))
            return
        reason = rule.check(module) if rule.check else None
        if reason:
            problems.append((path, label, reason))
            return
        if rule.kind in ("transparent", "pointwise", "wrapper"):
            for name, child in module.named_children():
                visit(child, f"{path}.{name}" if path else name, rule.kind == "pointwise" or pointwise_only)

    visit(model, "", False)
    root_rule = extra.get(qualified_name(type(model))) or _rule(model)
    if not isinstance(model, LayerMaskedModel) and root_rule is not None and root_rule.kind != "transparent":
        problems.insert(0, ("", qualified_name(type(model)), "the root must be a model or container, not a single layer"))
    return problems


def _describe(problems: list[tuple[str, str, str]]) -> str:
    path, label, reason = problems[0]
    where = f"'{path}'" if path else "the root module"
    more = ""
    if len(problems) > 1:
        others = ", ".join(f"'{p}' ({t.rsplit('.', 1)[-1]})" if p else f"the root ({t.rsplit('.', 1)[-1]})"
                           for p, t, _ in problems[1:4])
        more = f" ({len(problems) - 1} more: {others}{', ...' if len(problems) > 4 else ''})"
    return f"layer masking cannot convert {where} ({label}): {reason}{more}"


def convert(
    model: nn.Module, fill: str = "neighbor", avgpool_renorm: bool = False, transparent: Sequence[type | str] = (),
) -> nn.Module:
    """Make ``model`` layer-masked, in place; returns it.

    State-dict keys and the plain forward are unchanged (every converted layer is a subclass of
    the original), so weights load as they are, before or after conversion. Converting twice
    only updates the options.

    Args:
        model: a CNN whose every module has a rule (see :func:`supported_types`).
        fill: how masked convolutions read hidden inputs: ``"neighbor"`` (neighbour padding,
            the paper's default), ``"zero"`` or ``"partial"`` (partial-convolution rescaling).
        avgpool_renorm: renormalise AvgPool2d windows by their visible share (a deviation from
            the official code, which lets hidden zeros dilute the average).
        transparent: your own container classes (or qualified names) whose ``forward`` only
            chains sub-modules and applies ``+``, ``*``, ``mean(spatial dims)`` or ``permute``
            to activations; they are walked into like ``nn.Sequential``.

    Raises:
        UnsupportedLayerError: a module without a rule; the message names its path and type.
        ValueError: an unknown ``fill``.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got '{fill}'")
    problems = unsupported_modules(model, transparent)
    if problems:
        raise UnsupportedLayerError(_describe(problems))

    def leaf(name: str, module: nn.Module) -> bool:
        rule = _rule(module)
        return rule is not None and rule.kind not in ("transparent", "wrapper") and not isinstance(module, MaskedModule)

    def swap(name: str, module: nn.Module) -> nn.Module:
        rule = _rule(module)
        assert rule is not None
        base = type(module)
        if rule.kind == "masked":
            module.__class__ = rule.masked_cls
        elif rule.kind == "pointwise":
            module.__class__ = _pointwise_class(base, rule)
        else:
            module.__class__ = _plain_class(base, rule.kind)
        module.lm_name = name
        return module

    replace_modules(model, leaf, swap)
    for name, module in model.named_modules():  # wrappers last: their children were converted above
        rule = _rule(module)
        if name and rule is not None and rule.kind == "wrapper":
            module.__class__ = _wrapper_class(type(module), rule)
            module.lm_name = name
    if not isinstance(model, LayerMaskedModel):
        model.__class__ = _root_class(type(model))
    set_fill(model, fill)
    for module in model.modules():
        if isinstance(module, MaskedAvgPool2d):
            module.lm_renorm = avgpool_renorm
    return model


def set_fill(model: nn.Module, fill: str) -> None:
    """Set the fill rule (``neighbor``, ``zero``, ``partial``) of every masked convolution of ``model``."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got '{fill}'")
    for module in model.modules():
        if isinstance(module, MaskedConv2d):
            module.lm_fill = fill


@contextmanager
def use_fill(model: nn.Module, fill: str) -> Iterator[nn.Module]:
    """Temporarily switch the masked convolutions' fill rule."""
    old = {m: m.lm_fill for m in model.modules() if isinstance(m, MaskedConv2d)}
    set_fill(model, fill)
    try:
        yield model
    finally:
        for m, f in old.items():
            m.lm_fill = f


def masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{path: module}`` of the converted layers (for hooks and inspection)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MaskedModule)}


@torch.no_grad()
def keep_masks(model: nn.Module, images: Tensor, keep_mask: Tensor) -> dict[str, Tensor]:
    """Output keep mask of every converted layer that returns a masked map, for one masked forward.

    Returns:
        ``{path: (B, 1, h, w)}`` in forward order (channels-last masks are moved to NCHW).
    """
    found: dict[str, Tensor] = {}
    handles = []
    for name, module in masked_layers(model).items():
        def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, MaskedMap):
                found[name] = out.keep.permute(0, 3, 1, 2) if out.channels_last else out.keep
        handles.append(module.register_forward_hook(hook))
    try:
        model(images, keep_mask=keep_mask)
    finally:
        for h in handles:
            h.remove()
    return found
