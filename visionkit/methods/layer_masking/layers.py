"""Mask-aware layers for layer masking (Balasubramanian & Feizi, ICCV 2023).

A :class:`MaskedMap` carries an activation map and its binary *keep* mask (1 = visible) through
a converted CNN. Every layer that mixes positions (convolutions, pools, global pools, the SE
squeeze) first hides the positions its input mask marks as hidden, so hidden content never
reaches a visible output. Position-wise layers (BatchNorm in eval, activations, LayerNorm over
channels, Linear over channels-last maps) run unchanged: what they write at hidden positions is
never read, because the next mixing layer hides it again.

Shapes: values ``(B, C, H, W)`` (or ``(B, H, W, C)`` channels-last, inside ConvNeXt blocks);
keep ``(B, 1, H, W)`` (or ``(B, H, W, 1)``), float32 with values in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.errors import VisionkitError

__all__ = [
    "FILLS",
    "GAP_EPS",
    "NP_EPS",
    "PARTIAL_EPS",
    "LayerMaskingError",
    "MaskedAdaptiveAvgPool2d",
    "MaskedAdaptiveMaxPool2d",
    "MaskedAvgPool2d",
    "MaskedBatchNorm2d",
    "MaskedConv2d",
    "MaskedMap",
    "MaskedMaxPool2d",
    "MaskedModule",
    "as_keep_mask",
    "box_sum3",
    "convmlp_forward",
    "conv_mask",
    "fill_rings",
    "hide",
    "masked_adaptive_avg_pool",
    "masked_mean",
    "neighbor_pad",
]

#: Fill rules of a masked convolution: neighbour padding (the paper's default), zeros, or partial-conv renormalisation.
FILLS = ("neighbor", "zero", "partial")
Fill = Literal["neighbor", "zero", "partial"]
#: Epsilon of the neighbour-padding average (official ``fast_fmm``).
NP_EPS = 1e-5
#: Epsilon of the masked global mean (official masked GAP); an all-hidden map pools to exactly 0.
GAP_EPS = 1e-8
#: Epsilon of the partial-convolution ratio.
PARTIAL_EPS = 1e-8


class LayerMaskingError(VisionkitError, ValueError):
    """A keep mask or a masked forward that layer masking cannot handle (one-line message)."""


# --------------------------------------------------------------------------------------------
# The masked activation map
# --------------------------------------------------------------------------------------------
class MaskedMap:
    """An activation map and its keep mask; the value type that flows through a converted CNN.

    Values at hidden positions are unspecified (often stale); read :meth:`hidden_zeroed` for a
    map with exact zeros there. Supports the few tensor operations residual blocks apply to
    their activations: ``+`` (residual add: the keep masks intersect), ``*`` / :meth:`mul`
    (gates and layer scales), :meth:`mean` / :meth:`amax` over the spatial dims (masked global
    pools that return plain tensors) and :meth:`permute` between NCHW and NHWC. Any other torch
    function raises :class:`LayerMaskingError` naming the function.

    Args:
        values: ``(B, C, H, W)``, or ``(B, H, W, C)`` when ``channels_last``.
        keep: ``(B, 1, H, W)`` (or ``(B, H, W, 1)``) float mask, 1 = visible.
        channels_last: layout of ``values`` and ``keep``.
    """

    __slots__ = ("channels_last", "keep", "values")

    def __init__(self, values: Tensor, keep: Tensor, channels_last: bool = False) -> None:
        self.values = values
        self.keep = keep
        self.channels_last = channels_last

    # ---- tensor-like attributes -----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        """Shape of the values."""
        return self.values.shape

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the values."""
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        """Device of the values."""
        return self.values.device

    @property
    def ndim(self) -> int:
        """Number of dims of the values (4)."""
        return self.values.ndim

    def dim(self) -> int:
        """Number of dims of the values (4)."""
        return self.values.ndim

    def size(self, dim: int | None = None) -> Any:
        """``values.size(dim)``."""
        return self.values.size() if dim is None else self.values.size(dim)

    @property
    def spatial_dims(self) -> tuple[int, int]:
        """The two spatial dims: ``(2, 3)`` for NCHW, ``(1, 2)`` for NHWC."""
        return (1, 2) if self.channels_last else (2, 3)

    def hidden_zeroed(self) -> Tensor:
        """The values with exact zeros at hidden positions."""
        return hide(self.values, self.keep)

    def __repr__(self) -> str:
        visible = float(self.keep.float().mean()) if self.keep.numel() else 0.0
        layout = "NHWC" if self.channels_last else "NCHW"
        return f"MaskedMap(values={tuple(self.values.shape)} {layout}, visible={visible:.3f})"

    # ---- arithmetic used by residual blocks -----------------------------------------------
    def _combine(self, other: Any, op: Callable[[Any, Any], Tensor], reverse: bool = False) -> MaskedMap:
        if isinstance(other, MaskedMap):
            if other.channels_last != self.channels_last:
                raise LayerMaskingError("cannot combine an NCHW and an NHWC masked map")
            if other.values.shape != self.values.shape:
                raise LayerMaskingError(
                    f"residual shapes differ: {tuple(self.values.shape)} vs {tuple(other.values.shape)}"
                )
            keep = self.keep * other.keep  # intersection rule: visible only where both branches are
            out = op(other.values, self.values) if reverse else op(self.values, other.values)
            return MaskedMap(out, keep, self.channels_last)
        if isinstance(other, Tensor) and other.ndim >= self.values.ndim and other.shape[-2:] == self.values.shape[-2:] \
                and self.values.shape[-1] > 1 and other.shape[-1] > 1:
            raise LayerMaskingError(
                f"a spatial plain tensor {tuple(other.shape)} was combined with a masked map; "
                "its hidden positions are unknown to layer masking"
            )
        out = op(other, self.values) if reverse else op(self.values, other)
        return MaskedMap(out, self.keep, self.channels_last)

    def __add__(self, other: Any) -> MaskedMap:
        return self._combine(other, torch.add)

    def __radd__(self, other: Any) -> MaskedMap:
        return self._combine(other, torch.add, reverse=True)

    def __iadd__(self, other: Any) -> MaskedMap:  # a new map: never write into shared tensors
        return self._combine(other, torch.add)

    def __mul__(self, other: Any) -> MaskedMap:
        return self._combine(other, torch.mul)

    def __rmul__(self, other: Any) -> MaskedMap:
        return self._combine(other, torch.mul, reverse=True)

    def __imul__(self, other: Any) -> MaskedMap:
        return self._combine(other, torch.mul)

    def add(self, other: Any) -> MaskedMap:
        """``self + other``."""
        return self._combine(other, torch.add)

    def mul(self, other: Any) -> MaskedMap:
        """``self * other`` (e.g. a layer scale ``(1, C, 1, 1)``)."""
        return self._combine(other, torch.mul)

    def contiguous(self, *args: Any, **kwargs: Any) -> MaskedMap:
        """Contiguous values."""
        return MaskedMap(self.values.contiguous(*args, **kwargs), self.keep, self.channels_last)

    # ---- layout and reductions ------------------------------------------------------------
    def permute(self, *dims: Any) -> MaskedMap:
        """NCHW <-> NHWC: ``permute(0, 2, 3, 1)`` or ``permute(0, 3, 1, 2)``."""
        order = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], Sequence) else tuple(dims)
        order = tuple(d % 4 for d in order)
        if order == (0, 2, 3, 1) and not self.channels_last:
            layout = True
        elif order == (0, 3, 1, 2) and self.channels_last:
            layout = False
        elif order == (0, 1, 2, 3):
            layout = self.channels_last
        else:
            raise LayerMaskingError(f"permute{order} of a masked map is not a NCHW/NHWC change of layout")
        return MaskedMap(self.values.permute(order), self.keep.permute(order), layout)

    def _spatial(self, dim: Any) -> tuple[int, ...]:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        dims = tuple(sorted(d % self.values.ndim for d in dims))
        if dims != self.spatial_dims:
            raise LayerMaskingError(
                f"a reduction over dims {dims} of a masked map; only the spatial dims {self.spatial_dims} can be pooled"
            )
        return dims

    def mean(self, dim: Any, keepdim: bool = False) -> Tensor:
        """Masked mean over the spatial dims (the SE squeeze, timm's fast global pool); a plain tensor."""
        return masked_mean(self.values, self.keep, self._spatial(dim), keepdim)

    def amax(self, dim: Any, keepdim: bool = False) -> Tensor:
        """Maximum over visible positions (0 where everything is hidden); a plain tensor."""
        dims = self._spatial(dim)
        low = torch.where(self.keep > 0, self.values, float("-inf")).amax(dims, keepdim=keepdim)
        anyv = self.keep.amax(dims, keepdim=keepdim) > 0
        return torch.where(anyv, low, torch.zeros((), dtype=low.dtype, device=low.device))

    # ---- everything else is an error ------------------------------------------------------
    _BINARY: ClassVar[dict[str, tuple[Callable[[Any, Any], Tensor], bool]]] = {
        "__add__": (torch.add, False), "add": (torch.add, False), "__radd__": (torch.add, True),
        "__iadd__": (torch.add, False), "__mul__": (torch.mul, False), "mul": (torch.mul, False),
        "__rmul__": (torch.mul, True), "__imul__": (torch.mul, False),
    }

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict | None = None) -> Any:
        """Route ``tensor + map`` / ``tensor * map``; any other torch function on a masked map is an error."""
        name = getattr(func, "__name__", str(func))
        kwargs = kwargs or {}
        if name in cls._BINARY and len(args) == 2 and not kwargs:
            a, b = args
            op, swapped = cls._BINARY[name]
            if isinstance(a, MaskedMap) and not swapped:
                return a._combine(b, op)
            if isinstance(b, MaskedMap):
                return b._combine(a, op, reverse=not swapped)
            return a._combine(b, op, reverse=True)
        raise LayerMaskingError(
            f"torch function '{name}' received a MaskedMap; layer masking has no rule for it "
            "(convert() accepts only modules whose forward it knows)"
        )


# --------------------------------------------------------------------------------------------
# Functional building blocks
# --------------------------------------------------------------------------------------------
def hide(values: Tensor, keep: Tensor) -> Tensor:
    """``values`` with exact zeros where ``keep == 0`` (NaN- and Inf-safe, unlike ``values * keep``)."""
    return torch.where(keep > 0, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _masked(values: Tensor, keep: Tensor) -> Tensor:
    """``values * keep``: zeros at hidden positions for finite values (inside the network, where the
    model's entry point has already replaced hidden pixels by zeros); cheaper than :func:`hide`."""
    return values * keep.to(values.dtype)


_ONES: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def box_sum3(t: Tensor) -> Tensor:
    """Per-channel 3x3 box sum with zero padding, stride 1: ``(B, C, H, W) -> (B, C, H, W)``.

    A depthwise convolution with a cached all-ones kernel (about twice as fast on CPU as
    ``avg_pool2d`` with ``divisor_override=1``).
    """
    key = (t.shape[1], t.dtype, t.device)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = torch.ones(t.shape[1], 1, 3, 3, dtype=t.dtype, device=t.device)
    return F.conv2d(t, ones, None, 1, 1, 1, t.shape[1])


def neighbor_pad(x: Tensor, keep: Tensor, iterations: int, eps: float = NP_EPS) -> Tensor:
    """Neighbour padding ``NP_k(x, m)``: fill hidden pixels ring by ring from visible neighbours.

    Each iteration gives every hidden pixel that has a valid 3x3 neighbour the mean of its
    valid neighbours (visible or filled in an earlier iteration); it then counts as valid.
    Visible pixels never change; pixels farther than ``iterations`` (Chebyshev) from the visible
    set stay 0. The fill is computed without gradient, so gradients reach visible pixels only.

    Args:
        x: ``(B, C, H, W)`` activations.
        keep: ``(B, 1, H, W)`` keep mask in {0, 1}.
        iterations: number of rings to fill (``k``); 0 returns ``x`` with hidden pixels zeroed.
        eps: added to the neighbour count.

    Returns:
        ``(B, C, H, W)``, same dtype as ``x``.
    """
    base = _masked(x, keep)
    if iterations <= 0:
        return base
    with torch.no_grad():
        valid = keep.float()
        if bool(valid.min() > 0):
            return base
        filled = base.detach().float()
        for _ in range(iterations):
            count = box_sum3(valid)
            weight = (1.0 - valid) / (count + eps)  # 0 at valid pixels: they never change
            filled = torch.addcmul(filled, box_sum3(filled), weight)
            valid = torch.clamp(valid + count, max=1.0)
            if bool(valid.min() > 0):
                break
        filled = filled.to(x.dtype)
    if torch.is_grad_enabled() and base.requires_grad:
        return base + (filled - base.detach())  # same values; gradient only through x * m
    return filled


def masked_mean(values: Tensor, keep: Tensor, dims: tuple[int, ...], keepdim: bool = False, eps: float = GAP_EPS) -> Tensor:
    """Mean over visible positions, ``sum(x m) / (sum(m) + eps * n)``, computed in float32.

    An all-hidden map gives exactly 0; an all-visible one gives the plain mean.
    """
    num = _masked(values, keep).float().mean(dims, keepdim=keepdim)
    den = keep.float().mean(dims, keepdim=keepdim) + eps
    return (num / den).to(values.dtype)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """Explicit ``(left, right, top, bottom)`` zero padding of a Conv2d (resolves ``'same'``/``'valid'``)."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for k, d in zip(conv.kernel_size[::-1], conv.dilation[::-1], strict=True):  # W first, as F.pad wants
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)  # type: ignore[return-value]
    ph, pw = _pair(conv.padding)
    return (pw, pw, ph, ph)


def conv_mask(keep: Tensor, kernel_size: Sequence[int], stride: Sequence[int], padding: tuple[int, int, int, int],
              dilation: Sequence[int]) -> Tensor:
    """Output keep mask of a convolution: visible where its window holds a visible input pixel.

    ``MaxPool2d(kernel, stride, padding, dilation)`` of the mask with zero (hidden) padding.
    ``keep`` ``(B, 1, H, W)`` -> ``(B, 1, H', W')``.
    """
    with torch.no_grad():
        padded = F.pad(keep, padding) if any(padding) else keep
        return F.max_pool2d(padded, tuple(kernel_size), tuple(stride), 0, tuple(dilation))


# --------------------------------------------------------------------------------------------
# Mask-aware layers (subclasses: state-dict keys and plain behaviour are unchanged)
# --------------------------------------------------------------------------------------------
class MaskedModule:
    """Marker mixin of converted layers. ``lm_name`` is the module path, used in error messages."""

    lm_name: str = ""

    def _lm_label(self) -> str:
        return f"'{self.lm_name}' ({type(self).__mro__[1].__name__})" if self.lm_name else type(self).__mro__[1].__name__


def _require_layout(module: MaskedModule, x: MaskedMap, channels_last: bool) -> None:
    if x.channels_last != channels_last:
        want = "NHWC (channels-last)" if channels_last else "NCHW"
        raise LayerMaskingError(f"layer masking: {module._lm_label()} needs an {want} masked map")


class MaskedConv2d(nn.Conv2d, MaskedModule):
    """Conv2d that also takes a :class:`MaskedMap`.

    Masked rule (``lm_fill``): ``neighbor`` fills hidden inputs by neighbour padding with
    ``dilation * (K - 1)`` rings (every pixel a kept output reads; for undilated kernels the
    kept outputs equal the official ``K`` rings exactly), ``zero`` reads hidden inputs as 0,
    ``partial`` rescales by the visible fraction of each window (partial convolution; the
    zero padding outside the image counts as visible, so an all-ones mask gives the plain
    output, unlike the official code, which counts it as hidden). The
    output mask is ``MaxPool(K, stride, padding, dilation)`` of the input mask. 1x1 kernels need
    no fill: a kept output reads only its own, visible, pixel.
    """

    lm_fill: str = "neighbor"

    def forward(self, x: Any) -> Any:  # noqa: D102 - documented on the class
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        padding = conv_padding(self)
        keep_out = conv_mask(x.keep, self.kernel_size, self.stride, padding, self.dilation)
        kh, kw = self.kernel_size
        if self.lm_fill == "partial":
            inputs = _masked(x.values, x.keep)
            out = self._conv_forward(inputs, self.weight, None)
            with torch.no_grad():  # visible share of each window; the image border counts as visible,
                ones = torch.ones(1, 1, kh, kw, dtype=torch.float32, device=x.keep.device)  # as in training
                padded = F.pad(x.keep.float(), padding, value=1.0) if any(padding) else x.keep.float()
                ratio = F.conv2d(padded, ones / (kh * kw), None, self.stride, 0, self.dilation) + PARTIAL_EPS
            out = (out.float() / ratio).to(out.dtype)
            if self.bias is not None:
                out = out + self.bias.view(1, -1, 1, 1)
            return MaskedMap(out, keep_out)
        if self.lm_fill == "zero" or (kh == 1 and kw == 1):
            inputs = _masked(x.values, x.keep) if (kh, kw) != (1, 1) else x.values
        else:
            inputs = neighbor_pad(x.values, x.keep, fill_rings(self))
        return MaskedMap(self._conv_forward(inputs, self.weight, self.bias), keep_out)


def _check_eval_norm(module: nn.Module, label: str) -> None:
    stats = getattr(module, "running_mean", None) is not None
    if module.training or not stats:
        raise LayerMaskingError(
            f"layer masking: {label} would use batch statistics (hidden positions would leak in); "
            "call model.eval() before a masked forward"
        )


class MaskedBatchNorm2d(nn.BatchNorm2d, MaskedModule):
    """BatchNorm2d with running statistics applied per position; the mask passes through unchanged.

    A masked forward in training mode is an error: batch statistics would mix hidden positions in.
    """

    def forward(self, x: Any) -> Any:  # noqa: D102
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        _check_eval_norm(self, self._lm_label())
        return MaskedMap(super().forward(x.values), x.keep)


class MaskedMaxPool2d(nn.MaxPool2d, MaskedModule):
    """MaxPool2d over visible inputs only (hidden ones read as -inf); output mask = max-pool of the mask."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        args = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        low = torch.where(x.keep > 0, x.values, float("-inf"))
        out = F.max_pool2d(low, *args)
        with torch.no_grad():
            keep = F.max_pool2d(x.keep, *args)
        return MaskedMap(hide(out, keep), keep)


class MaskedAvgPool2d(nn.AvgPool2d, MaskedModule):
    """AvgPool2d of the input with hidden positions as 0; output visible where any input is.

    Official rule: not renormalised (hidden zeros dilute edge windows). ``lm_renorm = True``
    divides by the visible share of each window instead (a masked mean; a flagged deviation).
    """

    lm_renorm: bool = False

    def _pool(self, t: Tensor) -> Tensor:
        return F.avg_pool2d(t, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def forward(self, x: Any) -> Any:  # noqa: D102
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        out = self._pool(_masked(x.values, x.keep))
        with torch.no_grad():
            share = self._pool(x.keep.float())
            keep = (share > 0).to(x.keep.dtype)
            if self.lm_renorm:
                share = share / self._pool(torch.ones_like(x.keep, dtype=torch.float32))
        if self.lm_renorm:
            out = (out.float() / (share + GAP_EPS)).to(out.dtype)
        return MaskedMap(out, keep)


class MaskedAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d, MaskedModule):
    """Masked mean per output bin, ``pool(x m) / (pool(m) + 1e-8)``; returns a plain tensor.

    With output size 1 this is the masked global average pool: an all-hidden map pools to 0, so
    a linear head then returns its bias.
    """

    def forward(self, x: Any) -> Any:  # noqa: D102
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        num = F.adaptive_avg_pool2d(_masked(x.values, x.keep).float(), self.output_size)
        den = F.adaptive_avg_pool2d(x.keep.float(), self.output_size) + GAP_EPS
        return (num / den).to(x.values.dtype)


class MaskedAdaptiveMaxPool2d(nn.AdaptiveMaxPool2d, MaskedModule):
    """Maximum over the visible positions of each bin (0 for an all-hidden bin); returns a plain tensor."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        if not isinstance(x, MaskedMap):
            return super().forward(x)
        _require_layout(self, x, channels_last=False)
        if self.return_indices:
            raise LayerMaskingError(f"layer masking: {self._lm_label()} with return_indices is not supported")
        low = torch.where(x.keep > 0, x.values, float("-inf"))
        out = F.adaptive_max_pool2d(low, self.output_size)
        anyv = F.adaptive_max_pool2d(x.keep, self.output_size) > 0
        return torch.where(anyv, out, torch.zeros((), dtype=out.dtype, device=out.device))


def masked_adaptive_avg_pool(x: MaskedMap, output_size: tuple[int, int]) -> MaskedMap:
    """Masked mean per adaptive-pool bin, ``pool(x m) / (pool(m) + 1e-8)``, as a masked map.

    A bin is visible when it holds a visible input; an all-visible map gives the plain pool.
    Used where a head enlarges a small map (timm VGG's ``ConvMlp``): every output bin then reads
    one or two input positions. ``(B, C, H, W) -> (B, C, *output_size)`` (NCHW only).
    """
    num = F.adaptive_avg_pool2d(_masked(x.values, x.keep).float(), output_size)
    with torch.no_grad():
        share = F.adaptive_avg_pool2d(x.keep.float(), output_size)
    values = (num / (share + GAP_EPS)).to(x.values.dtype)
    return MaskedMap(values, (share > 0).to(x.keep.dtype))


def convmlp_forward(module: nn.Module, x: MaskedMap) -> MaskedMap:
    """timm VGG ``ConvMlp`` (the 7x7-conv pre-logits) on a masked map, step by step as timm's forward.

    A map smaller than ``fc1``'s kernel is first enlarged by :func:`masked_adaptive_avg_pool`
    (timm: ``F.adaptive_avg_pool2d`` to at least ``kernel x kernel``); then the converted
    ``fc1`` (masked conv), ``act1``, ``drop``, ``fc2`` (1x1) and ``act2`` run on the masked map.
    """
    if x.channels_last:
        raise LayerMaskingError(f"layer masking: {module._lm_label()} needs an NCHW masked map")
    k = module.input_kernel_size
    h, w = x.shape[-2:]
    if h < k or w < k:
        x = masked_adaptive_avg_pool(x, (max(k, h), max(k, w)))
    x = module.fc1(x)
    x = module.act1(x)
    x = module.drop(x)
    x = module.fc2(x)
    return module.act2(x)


# --------------------------------------------------------------------------------------------
# Keep-mask validation (the model's entry point)
# --------------------------------------------------------------------------------------------
def as_keep_mask(keep_mask: Any, images: Tensor) -> Tensor:
    """Check a keep mask against ``images`` ``(B, C, H, W)`` and return it as float ``(B, 1, H, W)``.

    Accepted shapes: ``(H, W)``, ``(B, H, W)``, ``(B, 1, H, W)`` (``B`` may be 1 to broadcast);
    values must be binary (bool, or numbers in {0, 1}; 1 = visible).

    Raises:
        LayerMaskingError: wrong shape or non-binary values (one line naming what was found).
    """
    keep = torch.as_tensor(keep_mask, device=images.device)
    if images.ndim != 4:
        raise LayerMaskingError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    shape = tuple(keep.shape)
    if keep.ndim == 2:
        keep = keep[None, None]
    elif keep.ndim == 3:
        keep = keep[:, None]
    if keep.ndim != 4 or keep.shape[1] != 1 or keep.shape[-2:] != (h, w) or keep.shape[0] not in (1, b):
        raise LayerMaskingError(
            f"keep_mask has shape {shape} but the images are {tuple(images.shape)}; "
            f"expected (H, W), (B, H, W) or (B, 1, H, W) with H, W = {h}, {w} and B = {b} or 1"
        )
    if keep.dtype != torch.bool:
        if keep.is_complex():
            raise LayerMaskingError(f"keep_mask must be binary (0 = hidden, 1 = visible), got dtype {keep.dtype}")
        bad = (keep != 0) & (keep != 1)
        if bool(bad.any()):
            sample = float(keep[bad].flatten()[0])
            raise LayerMaskingError(
                f"keep_mask must be binary (0 = hidden, 1 = visible); found {int(bad.sum())} other values, e.g. {sample:g}"
            )
    keep = keep.to(torch.float32)
    if keep.shape[0] != b:
        keep = keep.expand(b, 1, h, w)
    return keep


def fill_rings(conv: nn.Conv2d) -> int:
    """Neighbour-padding rings a masked conv uses: ``dilation * (K - 1)`` (0 for 1x1 kernels)."""
    kh, kw = conv.kernel_size
    return max(conv.dilation[0] * (kh - 1), conv.dilation[1] * (kw - 1))

