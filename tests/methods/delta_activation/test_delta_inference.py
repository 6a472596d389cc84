"""Delta inference (spec B5 oracle 6): accumulating the next layers' outputs over the quantised deltas gives the
dense outputs, and the MAC counts (dense ``fanout * numel``, delta ``fanout * nnz(delta)``) are exact."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.layers import Conv2dSame
from torch import nn

from visionkit.methods.delta_activation.delta_inference import (
    DeltaInferenceError,
    DeltaReport,
    LayerMacs,
    check_delta_equivalence,
    delta_macs,
    time_forward_pair,
)
from visionkit.methods.delta_activation.insert import delta_layers, insert_delta_activations
from visionkit.methods.delta_activation.layers import DeltaActivation


def tiny_cnn(consumer: nn.Module | None = None) -> nn.Sequential:
    """Spec B7's per-frame CNN at 16 px: DALs on the input, after each BN-ReLU and after a hidden Linear;
    conv and Linear consumers with biases; BN with non-trivial running statistics; eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        DeltaActivation(3, 0.1, fanout=16 * 9),
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        DeltaActivation(16, 0.25, fanout=32 * 9, activation="relu"),
        consumer or nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        DeltaActivation(32, 0.25, fanout=1, activation="relu"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 16),
        DeltaActivation(16, 0.1, fanout=10, activation="relu"),
        nn.Linear(16, 10),
    )
    for bn in (net[2], net[5]):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def moving_clip(clips: int = 2, frames: int = 5, size: int = 16) -> torch.Tensor:
    """``(B, T, 3, size, size)``: a bright square moving 1 px per frame over a fixed noise texture."""
    gen = torch.Generator().manual_seed(1)
    video = torch.rand(clips, 1, 3, size, size, generator=gen).repeat(1, frames, 1, 1, 1) * 0.5
    for t in range(frames):
        video[:, t, :, 4 : 9, 2 + t : 7 + t] = 1.0
    return video


@pytest.mark.parametrize(
    "consumer",
    [lambda: None, lambda: nn.Conv2d(16, 32, 3, stride=2, padding=1, padding_mode="reflect"),
     lambda: Conv2dSame(16, 32, 3, stride=2), lambda: nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4)],
    ids=["zeros-padding", "reflect-padding", "timm-Conv2dSame", "grouped"],
)
def test_delta_accumulated_outputs_equal_dense_outputs_in_float64(consumer) -> None:
    torch.manual_seed(2)
    net = tiny_cnn(consumer())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    error = check_delta_equivalence(net, moving_clip())
    assert error < 1e-9
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model is not converted
    assert next(net.parameters()).dtype == torch.float32


def test_the_check_sees_a_layer_that_is_not_the_same_linear_map_every_frame() -> None:
    class DriftingConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.weight.add_(0.05)  # a different linear map at every call: accumulation breaks
            return super().forward(x)

    net = tiny_cnn(DriftingConv(16, 32, 3, stride=2, padding=1))
    assert check_delta_equivalence(net, moving_clip()) > 1e-3


def test_delta_macs_count_a_hand_made_clip_exactly() -> None:
    # one channel, step 1, fan-out 3; frames (2x2): y_0 = [0, 1, 2, 0], y_1 = [0, 1, 3, 0], y_2 = y_1
    net = nn.Sequential(DeltaActivation(1, 1.0, fanout=3), nn.Conv2d(1, 1, 1))
    clip = torch.tensor([[0.0, 1.2, 2.0, 0.1], [0.0, 0.9, 2.6, 0.2], [0.0, 0.9, 2.6, 0.2]]).view(3, 1, 2, 2)
    report = delta_macs(net, clip)
    layer = report.layers["0"]
    assert (report.frames, report.clips) == (3, 1)
    assert (layer.fanout, layer.first_nnz, layer.nnz, layer.numel) == (3, 2, 1, 8)
    assert layer.dense_macs == 3 * 4 * 3 and layer.delta_macs == 3 * (2 + 1 + 0)
    assert layer.skipped_macs == 3 * ((4 - 2) + (4 - 1) + (4 - 0))
    assert layer.density == 1 / 8 and report.ratio == 36 / 9


def test_report_totals_pool_counts_over_layers() -> None:
    report = DeltaReport(
        {"a": LayerMacs(fanout=2, dense_macs=40, delta_macs=10, nnz=3, numel=10, first_nnz=2),
         "b": LayerMacs(fanout=10, dense_macs=300, delta_macs=20, nnz=1, numel=20, first_nnz=1)},
        frames=2, clips=1,
    )
    assert report.dense_macs == 340 and report.delta_macs == 30 and report.skipped_macs == 310
    assert report.ratio == 340 / 30
    assert report.density == 4 / 30  # sum nnz / sum numel, not the mean of 0.3 and 0.05
    assert report.mac_density == (2 * 3 + 10 * 1) / (2 * 10 + 10 * 20)
    lines = report.table().splitlines()
    assert lines[0].split()[:2] == ["layer", "fanout"] and lines[-1].split()[0] == "total"
    assert lines[-1].endswith("11.33x")


def test_static_clip_costs_only_the_first_frame() -> None:
    net = tiny_cnn()
    clip = moving_clip(frames=4)
    frame = clip[:, :1]
    static = delta_macs(net, frame.repeat(1, 4, 1, 1, 1))
    first = delta_macs(net, frame)
    assert static.delta_macs == first.delta_macs > 0
    assert static.dense_macs == 4 * first.dense_macs
    assert all(layer.nnz == 0 and layer.numel > 0 for layer in static.layers.values())
    assert static.density == 0 and static.ratio == 4 * first.ratio
    moving = delta_macs(net, clip)  # same first frame, then the square moves
    assert moving.delta_macs > static.delta_macs  # the counts do see motion


def test_delta_macs_accepts_one_clip_and_restores_the_model_state() -> None:
    net = tiny_cnn().train()
    for layer in delta_layers_by_type(net):
        layer.num_frames = 5
    clips = moving_clip()
    one = delta_macs(net, clips[0])  # (T, C, H, W)
    both = delta_macs(net, clips)
    assert one.clips == 1 and both.clips == 2 and list(one.layers) == ["0", "3", "6", "10"]
    assert 0 < one.delta_macs < both.delta_macs
    assert net.training and all(m.training for m in net.modules())
    assert all(layer.num_frames == 5 for layer in delta_layers_by_type(net))


def delta_layers_by_type(net: nn.Module) -> list[DeltaActivation]:
    return [m for m in net.modules() if isinstance(m, DeltaActivation)]


def test_timm_resnet_with_inserted_layers_is_exact_in_delta_mode() -> None:
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=10).eval()
    insert_delta_activations(net, torch.zeros(1, 3, 32, 32), threshold_init=0.25)
    clip = torch.rand(1, 3, 3, 32, 32) * 2
    assert check_delta_equivalence(net, clip) < 1e-9
    report = delta_macs(net, clip)
    assert [name.removesuffix(".delta") for name in report.layers] == list(delta_layers(net))
    assert all(layer.fanout == m.fanout for layer, m in zip(report.layers.values(), delta_layers(net).values(), strict=True))
    assert report.dense_macs == sum(m.fanout * n for m, n in zip(delta_layers(net).values(), dense_sizes(net, clip), strict=True))


def dense_sizes(net: nn.Module, clip: torch.Tensor) -> list[int]:
    """Elements of each delta layer's output over all frames of ``clip`` (forward order)."""
    sizes: list[int] = []
    handles = [m.register_forward_hook(lambda _m, _i, y: sizes.append(y.numel())) for m in delta_layers(net).values()]
    with torch.no_grad():
        net(clip[:, 0])
    for h in handles:
        h.remove()
    return [s * clip.shape[1] for s in sizes]


def test_forward_timing_alternates_and_restores_the_layers() -> None:
    net, plain = tiny_cnn(), nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()).eval()
    timing = time_forward_pair(net, plain, moving_clip().flatten(0, 1), repeats=3, num_frames=5)
    assert len(timing.plain_s) == len(timing.delta_s) == 3
    assert timing.ratio > 0 and math.isfinite(timing.ratio)
    assert all(layer.num_frames is None for layer in delta_layers_by_type(net))


def test_bad_inputs_are_one_clear_error() -> None:
    net = tiny_cnn()
    shape = r"clip must be a float tensor \(T, C, H, W\) or \(B, T, C, H, W\), got torch.float32 \(3, 16, 16\)$"
    with pytest.raises(DeltaInferenceError, match=shape):
        delta_macs(net, torch.rand(3, 16, 16))
    with pytest.raises(DeltaInferenceError, match=r"clip must be a float tensor .*, got torch.uint8 \(2, 3, 16, 16\)$"):
        check_delta_equivalence(net, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(DeltaInferenceError, match="Sequential.* has no DeltaActivation layers; insert them first"):
        delta_macs(plain, torch.rand(2, 3, 8, 8))
    last = nn.Sequential(nn.Conv2d(3, 4, 3), DeltaActivation(4, 0.25, activation="relu"))
    with pytest.raises(DeltaInferenceError, match="no Conv2d or Linear takes a DeltaActivation output directly"):
        check_delta_equivalence(last, torch.rand(2, 3, 8, 8))
    with pytest.raises(DeltaInferenceError, match="repeats must be a positive number .*, got 0"):
        time_forward_pair(net, plain, torch.rand(2, 3, 16, 16), repeats=0)
