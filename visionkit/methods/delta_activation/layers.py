"""The Delta Activation Layer: learnable-step quantisation of activations whose frame-to-frame changes
are penalised, so that a trained network's activations mostly stay the same between video frames.

Per channel ``c`` the layer outputs ``y = round(a / q_c) * q_c`` with ``q_c = |theta_c|`` (the
quantised *state*, not the delta). Gradients follow the official TensorFlow layer
(``msifalakis/delta_activation_layer``, ``custom_layers.py``):

* ``dy/da = 1`` (straight-through rounding);
* the ``q`` dividing ``a`` gets no gradient, and the ``q`` multiplying gets a sign-flipped one:
  ``dL/dq_c = -sum(dL/dy * round(a / q_c))`` over the positions of channel ``c`` (then ``* sign(theta_c)``
  through ``|.|``). For the L1 penalty on deltas this gradient is <= 0, so descent *grows* ``q``.

The sparsity loss of a layer is ``fanout * mean|y_t - y_{t+1}|`` over the ``B * (T - 1) * C * H * W``
deltas of consecutive frames of each clip (the first frame is not a delta), where ``fanout`` is the
number of multiply-accumulates each activation feeds in the next layer(s).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor, nn

#: Fraction of zero outputs above which the layer warns that ``theta`` is far above the activation scale.
ALL_ZERO_FRACTION = 0.99


class _OfficialQuantize(torch.autograd.Function):
    """``round(a / q) * q`` with the official gradients: straight-through in ``a``, sign-flipped in ``q``."""

    @staticmethod
    def forward(ctx, a: Tensor, q: Tensor) -> Tensor:  # noqa: D102 - autograd signature
        steps = torch.round(a / q)
        ctx.save_for_backward(steps)
        ctx.q_shape = q.shape
        return steps * q

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        (steps,) = ctx.saved_tensors
        grad_q = -(grad * steps)
        dims = [d for d in range(grad_q.ndim) if ctx.q_shape[d] == 1 and grad_q.shape[d] != 1]
        grad_q = grad_q.sum(dim=dims, keepdim=True) if dims else grad_q
        return grad, grad_q.reshape(ctx.q_shape)


def quantize_official(a: Tensor, q: Tensor) -> Tensor:
    """``round(a / q) * q`` (half to even) with the official layer's gradients; ``q`` broadcasts against ``a``."""
    return _OfficialQuantize.apply(a, q)


class DeltaActivation(nn.Module):
    """Quantise activations ``(B*T, C, ...)`` with a learnable per-channel step and record their temporal deltas.

    The frames of a clip are folded into the batch (``(B*T, C, H, W)`` for conv features, ``(B*T, C)``
    for vectors). Set :attr:`num_frames` to ``T`` before a forward pass (the task does) to get the
    temporal statistics; with ``num_frames`` ``None`` the layer only quantises.

    Args:
        channels: number of channels ``C`` (the step is per channel).
        threshold_init: initial step ``theta`` (in the activation's units: ~0.25 after BatchNorm-ReLU).
        fanout: multiply-accumulates each output feeds in the next layer(s) (the loss weight).
        activation: ``"relu"`` to apply a ReLU first (fused), or ``None`` (placed after an activation).
        official_gradient: the official sign-flipped step gradient (default); ``False`` uses plain autograd
            through a straight-through round, whose step gradient is the rounding residual.

    After a forward pass with ``num_frames`` set, :attr:`last_loss` holds ``fanout * mean|y_t - y_{t+1}|``
    (0 for one-frame clips), and :attr:`last_nnz` / :attr:`last_numel` count the nonzero and all deltas.
    """

    def __init__(
        self,
        channels: int,
        threshold_init: float = 0.25,
        fanout: int = 1,
        activation: Literal["relu"] | None = None,
        official_gradient: bool = True,
    ) -> None:
        super().__init__()
        if channels < 1 or fanout < 1:
            raise ValueError(f"channels and fanout must be positive, got {channels} and {fanout}")
        if not threshold_init > 0:
            raise ValueError(f"threshold_init must be positive (the quantisation step), got {threshold_init}")
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        self.theta = nn.Parameter(torch.full((channels,), float(threshold_init)))
        self.fanout, self.activation, self.official_gradient = fanout, activation, official_gradient
        self.num_frames: int | None = None
        self.last_loss: Tensor | None = None
        self.last_nnz: Tensor | None = None
        self.last_numel = 0
        self._warned: set[str] = set()

    def extra_repr(self) -> str:
        return f"channels={self.theta.numel()}, fanout={self.fanout}, activation={self.activation}"

    def step(self) -> Tensor:
        """The quantisation step ``|theta|`` per channel ``(C,)`` (floored at 1e-8)."""
        return self.theta.abs().clamp_min(1e-8)

    def forward(self, a: Tensor) -> Tensor:
        if self.activation == "relu":
            a = torch.relu(a)
        q = self.step().to(a.dtype).view(1, -1, *([1] * (a.ndim - 2)))
        if self.official_gradient:
            y = quantize_official(a, q)
        else:  # straight-through round inside plain autograd: dy/dq is the rounding residual
            x = a / q
            y = (x + (torch.round(x) - x).detach()) * q
        self._record(y)
        return y

    def _record(self, y: Tensor) -> None:
        """Temporal deltas of the clips in ``y`` ``(B*T, C, ...)``: loss term and counts (when ``num_frames`` is set)."""
        self.last_loss, self.last_nnz, self.last_numel = None, None, 0
        frames = self.num_frames
        if frames is None:
            return
        if len(y) % frames:
            raise ValueError(f"batch of {len(y)} frames is not a whole number of {frames}-frame clips")
        if self.training and "scale" not in self._warned:  # checked on the first training batch only
            self._warned.add("scale")
            if float((y == 0).float().mean()) >= ALL_ZERO_FRACTION:
                warnings.warn(
                    f"DeltaActivation ({self.theta.numel()} channels): {ALL_ZERO_FRACTION:.0%} or more of the outputs "
                    f"are 0; the step (mean {float(self.step().detach().mean()):.3g}) is far above the activation scale",
                    stacklevel=2,
                )
        clips = y.reshape(len(y) // frames, frames, *y.shape[1:])
        delta = clips[:, :-1] - clips[:, 1:]
        if frames == 1:
            if "single" not in self._warned:
                self._warned.add("single")
                warnings.warn("DeltaActivation got one-frame clips: there are no temporal deltas (loss 0)", stacklevel=2)
            self.last_loss = y.new_zeros((), dtype=torch.float32)
        else:
            self.last_loss = self.fanout * delta.float().abs().mean()
        self.last_nnz = (delta != 0).sum()
        self.last_numel = delta.numel()
