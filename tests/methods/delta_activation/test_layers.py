"""Oracles of the Delta Activation Layer (spec B5 1-5, 7): quantisation grid, straight-through gradient,
the official step gradient, the loss value, static clips and extremes."""

from __future__ import annotations

import pytest
import torch

from visionkit.methods.delta_activation.layers import DeltaActivation, quantize_official


def _layer(channels: int = 3, theta: float = 0.5, frames: int | None = 2, **kwargs) -> DeltaActivation:
    layer = DeltaActivation(channels, threshold_init=theta, **kwargs)
    layer.num_frames = frames
    return layer


def test_outputs_lie_on_the_per_channel_grid_and_negative_theta_acts_like_its_magnitude() -> None:
    layer = _layer(theta=0.3)
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([0.3, -0.7, 1.1]))
    a = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3
    y = layer(a)
    steps = y / layer.theta.abs().view(1, 3, 1, 1)
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-5)
    assert (y - a).abs().max() <= layer.theta.abs().max() / 2 + 1e-6  # round to the nearest step
    assert torch.equal(torch.round(torch.tensor([0.5, 1.5, 2.5])), torch.tensor([0.0, 2.0, 2.0]))  # half to even


def test_straight_through_gradient_reaches_every_input_even_where_the_output_is_zero() -> None:
    a = (torch.rand(2, 3, 4, 4) * 0.2).requires_grad_()  # all below half a step: every output is 0
    w = torch.randn(2, 3, 4, 4)
    y = _layer(theta=1.0)(a)
    assert torch.count_nonzero(y) == 0
    (w * y).sum().backward()
    torch.testing.assert_close(a.grad, w, rtol=0, atol=0)
    b = torch.randn(2, 3, 4, 4).requires_grad_()  # fused ReLU masks the gradient
    (w * _layer(theta=1.0, activation="relu")(b)).sum().backward()
    torch.testing.assert_close(b.grad, w * (b > 0), rtol=0, atol=0)


def test_official_step_gradient_is_minus_the_sum_of_the_rounded_steps() -> None:
    layer = _layer(theta=0.4)
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([0.4, -0.6, 0.9]))
    a = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(1)) * 2
    layer(a).sum().backward()
    q = layer.theta.detach().abs().view(1, 3, 1, 1)
    expected = -torch.sign(layer.theta.detach()) * torch.round(a / q).sum((0, 2, 3))
    torch.testing.assert_close(layer.theta.grad, expected, rtol=1e-6, atol=1e-5)


def test_sparsity_loss_has_its_hand_value_and_pushes_the_step_up() -> None:
    layer = _layer(channels=2, theta=0.5, frames=2, fanout=9)
    # one clip of 2 frames, 2 channels, 1x2 pixels
    frame0 = torch.tensor([[[[0.0, 1.0]], [[2.0, 0.5]]]])
    frame1 = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.5]]]])
    layer(torch.cat([frame0, frame1]))
    # |y0 - y1| = [1, 0, 2, 0] over 4 delta elements -> mean 0.75, times fan-out 9
    assert float(layer.last_loss) == pytest.approx(9 * 0.75)
    assert int(layer.last_nnz) == 2 and layer.last_numel == 4
    layer.last_loss.backward()
    assert torch.all(layer.theta.grad <= 0), "descent must grow the step (official convention)"
    naive = _layer(channels=2, theta=0.5, frames=2, fanout=9, official_gradient=False)
    naive(torch.cat([frame0, frame1]))
    naive.last_loss.backward()
    assert torch.all(naive.theta.grad.abs() < layer.theta.grad.abs()), "plain autograd sees only rounding residuals"


def test_static_clips_have_no_deltas_and_one_frame_clips_a_zero_loss_with_a_warning() -> None:
    layer = _layer(frames=4)
    frame = torch.randn(1, 3, 5, 5)
    y = layer(frame.expand(8, -1, -1, -1))  # 2 clips of 4 identical frames
    assert float(layer.last_loss) == 0.0 and int(layer.last_nnz) == 0
    assert torch.equal(y[0], y[3])
    single = _layer(frames=1)
    with pytest.warns(UserWarning, match="one-frame clips"):
        single(torch.randn(3, 3, 5, 5))
    assert float(single.last_loss) == 0.0 and torch.isfinite(single.last_loss) and single.last_numel == 0


def test_extremes_of_the_step() -> None:
    a = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    coarse = _layer(theta=float(2 * a.abs().max()), frames=4)
    coarse.train()
    with pytest.warns(UserWarning, match="far above the activation scale"):
        y = coarse(a)
    assert torch.count_nonzero(y) == 0 and int(coarse.last_nnz) == 0
    fine = _layer(theta=1e-6, frames=4)
    torch.testing.assert_close(fine(a), a, rtol=0, atol=1e-6)
    changed = (a.view(2, 4, 3, 4, 4)[:, :-1] != a.view(2, 4, 3, 4, 4)[:, 1:]).sum()
    assert int(fine.last_nnz) == int(changed)


def test_quantize_official_broadcasts_the_step() -> None:
    q = torch.tensor([0.5, 2.0]).view(1, 2).requires_grad_()
    a = torch.tensor([[0.74, 2.9], [-0.2, -3.1]])
    y = quantize_official(a, q)
    torch.testing.assert_close(y, torch.tensor([[0.5, 2.0], [0.0, -4.0]]))
    y.sum().backward()
    torch.testing.assert_close(q.grad, torch.tensor([[-(1.0 + 0.0), -(1.0 - 2.0)]]))


def test_bad_arguments_and_partial_clips() -> None:
    with pytest.raises(ValueError, match="threshold_init must be positive"):
        DeltaActivation(3, threshold_init=0)
    with pytest.raises(ValueError, match="activation must be"):
        DeltaActivation(3, activation="gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number of 4-frame clips"):
        _layer(frames=4)(torch.randn(6, 3, 2, 2))
