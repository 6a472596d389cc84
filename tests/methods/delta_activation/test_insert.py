"""Inserting Delta Activation Layers into timm CNNs: fan-outs checked by hand on ``test_resnet``, insertion
into ResNet / MobileNetV3 / EfficientNet (counts, channels, quantised outputs), exact removal, prefix
thresholds, the fan-out-1 fallbacks, forward order, and the one-line errors."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import Tensor, nn

from visionkit.errors import ConfigValueError
from visionkit.methods.delta_activation.insert import (
    ACTIVATIONS,
    WithDelta,
    delta_layers,
    fanouts,
    insert_delta_activations,
    remove_delta_activations,
)
from visionkit.methods.delta_activation.layers import DeltaActivation

CLASSES = 10
MODELS = ["test_resnet", "mobilenetv3_small_050", "test_efficientnet"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=CLASSES).eval()


def _image(size: int = 32, batch: int = 2) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _delta_outputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The output ``(N, C, ...)`` of every inserted ``WithDelta`` on input ``x``."""
    outputs: dict[str, Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out))
        for name, module in model.named_modules()
        if isinstance(module, WithDelta)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return outputs


def test_resnet_fanouts_by_hand() -> None:
    model = _model("test_resnet")
    # the structure the expected values below are read from
    stem, block2, block3, block4 = model.conv1, model.layer2[0], model.layer3[0], model.layer4[0]
    assert (stem[3].out_channels, stem[6].out_channels, model.layer1[0].conv1.out_channels) == (16, 32, 32)
    assert (block2.conv1.out_channels, block2.downsample[1].out_channels) == (48, 48)
    assert (block3.conv1.kernel_size, block3.conv1.out_channels) == ((1, 1), 48)
    assert block3.downsample[1].out_channels == 192
    assert (block3.conv3.kernel_size, block3.conv3.out_channels) == ((1, 1), 192)
    assert (block4.conv1.out_channels, block4.downsample[1].out_channels) == (96, 96)
    model.train()
    bn_mean = model.conv1[1].running_mean.clone()

    fan = fanouts(model, _image())

    assert len(fan) == sum(isinstance(m, nn.ReLU) for m in model.modules()) == 12
    assert fan["conv1.2"] == 16 * 3 * 3  # stem ReLU -> 3x3 conv of 16
    assert fan["act1"] == 32 * 3 * 3  # through the max-pool into layer1's first 3x3 conv
    assert fan["layer1.0.act1"] == 32 * 3 * 3
    assert fan["layer1.0.act2"] == 48 * 3 * 3 + 48  # next 3x3 conv + avg-pool -> 1x1 projection shortcut
    assert fan["layer2.0.act2"] == 5 * 48  # the paper's 5f: bottleneck 1x1 conv (48) + projection (192)
    assert fan["layer3.0.act1"] == 48 * 3 * 3  # bottleneck 1x1 ReLU feeding the 3x3 conv: f*3*3
    assert fan["layer3.0.act2"] == 192  # 3x3 ReLU feeding the 1x1 expansion conv: 4f
    assert fan["layer3.0.act3"] == 96 * 3 * 3 + 96
    assert fan["layer4.0.act2"] == CLASSES  # global pool + flatten -> Linear
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert torch.equal(model.conv1[1].running_mean, bn_mean)  # the pass ran in eval mode


def test_grouped_conv_linear_and_order() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head_act = nn.GELU()  # registered first, called last
            self.conv = nn.Conv2d(3, 8, 3)
            self.act = nn.ReLU()
            self.dw = nn.Conv2d(8, 16, 3, groups=4)
            self.mid = nn.Hardswish()
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5))
            self.fc1, self.fc2 = nn.Linear(16, 7), nn.Linear(7, 3)

        def forward(self, x: Tensor) -> Tensor:
            x = self.pool(self.mid(self.dw(self.act(self.conv(x)))))
            return self.fc2(self.head_act(self.fc1(x)))

    model = Net()
    assert fanouts(model, torch.randn(1, 3, 12, 12)) == {"act": 3 * 3 * 16 // 4, "mid": 7, "head_act": 3}
    names = insert_delta_activations(model, torch.randn(1, 3, 12, 12), official_gradient=False)
    assert names == ["act", "mid", "head_act"] == list(delta_layers(model))
    assert [layer.theta.numel() for layer in delta_layers(model).values()] == [8, 16, 7]
    assert not any(layer.official_gradient for layer in delta_layers(model).values())


@pytest.mark.parametrize("name", MODELS)
def test_insert_quantise_and_remove(name: str) -> None:
    model, x = _model(name), _image()
    with torch.no_grad():
        before = model(x)
    originals = {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)}

    # a power-of-two step keeps y / step exact; small enough that deep layers of random nets are not all 0
    names = insert_delta_activations(model, x[:1], threshold_init=2.0**-6)

    assert sorted(names) == sorted(originals) and len(names) > 5
    layers = delta_layers(model)
    assert list(layers) == names
    assert all(isinstance(model.get_submodule(n), WithDelta) for n in names)
    assert all(model.get_submodule(n).activation is originals[n] for n in names)
    assert all(layer.fanout >= 1 and not layer.training for layer in layers.values())
    assert len({layer.fanout for layer in layers.values()}) > 3  # fan-outs really differ per layer
    outputs = _delta_outputs(model, _image(size=24, batch=3))  # another size than the traced one
    assert list(outputs) == sorted(outputs, key=names.index)
    for n, out in outputs.items():
        step = layers[n].step().view(1, -1, *([1] * (out.ndim - 2)))
        assert layers[n].theta.numel() == out.shape[1], n
        ratio = out / step
        assert torch.allclose(ratio, ratio.round(), rtol=0, atol=1e-5), n
    nonzero = sum(bool((out != 0).any()) for out in outputs.values())
    assert nonzero > len(outputs) // 2  # the steps do not quantise everything to 0
    with torch.no_grad():
        assert not torch.equal(model(x), before)

    assert sorted(remove_delta_activations(model)) == sorted(names)
    assert {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)} == originals
    assert not any(isinstance(m, (WithDelta, DeltaActivation)) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_threshold_prefixes() -> None:
    model = _model("test_resnet")
    steps = {"": 0.25, "layer3": 0.5, "layer3.0.act3": 1.0, "conv1": 2.0}
    insert_delta_activations(model, _image(), threshold_init=steps)
    theta = {n: layer.theta[0].item() for n, layer in delta_layers(model).items()}
    assert theta["layer3.0.act3"] == 1.0  # the longest prefix wins
    assert theta["layer3.0.act1"] == theta["layer3.0.act2"] == 0.5
    assert theta["conv1.2"] == theta["conv1.5"] == 2.0
    # "conv1" is not a prefix of "act1"; "" is the default
    assert theta["act1"] == theta["layer2.0.act1"] == 0.25

    for bad, match in [
        ({"layer3": 0.5}, "no entry for 'conv1.2'"),
        ({"": 0.25, "layer9": 1.0}, "match no activation: layer9"),
        ({"": -1.0}, "must be positive"),
    ]:
        with pytest.raises(ConfigValueError, match=match) as err:
            insert_delta_activations(_model("test_resnet"), _image(), threshold_init=bad)
        assert "\n" not in str(err.value)


def test_fallback_to_fanout_one() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)
            self.shared = nn.ReLU()
            self.tail = nn.SiLU()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            x = self.shared(self.conv2(self.shared(self.conv1(x))))
            return self.fc(self.tail(x).mean((2, 3)))  # functional mean: the Linear cannot be traced

    with pytest.warns(UserWarning, match=r"shared \(called 2 times\), tail \(no consumer\)"):
        assert fanouts(Net(), torch.randn(1, 3, 8, 8)) == {"shared": 1, "tail": 1}
    model = Net()
    with pytest.warns(UserWarning, match="fan-out 1"):
        insert_delta_activations(model, torch.randn(1, 3, 8, 8))
    assert model.shared.fallback == "called 2 times" and model.tail.fallback == "no consumer"
    assert model.shared.delta.fanout == model.tail.delta.fanout == 1
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_errors_are_one_line() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))
    no_act = r"Sequential has no activation module .*for ReLU, ReLU6"
    with pytest.raises(ConfigValueError, match=no_act) as err:
        insert_delta_activations(plain, torch.randn(1, 3, 8, 8))
    assert "\n" not in str(err.value)

    model = _model("test_resnet")
    insert_delta_activations(model, _image())
    with pytest.raises(ConfigValueError, match="ResNet already has delta activation layers") as err:
        insert_delta_activations(model, _image())
    assert "\n" not in str(err.value)

    with pytest.raises(ConfigValueError, match="after must be a non-empty tuple"):
        fanouts(plain, torch.randn(1, 3, 8, 8), after=("relu",))  # type: ignore[arg-type]
    with pytest.raises(ConfigValueError, match="example must be an input tensor"):
        fanouts(_model("test_resnet"), [1, 2])  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert remove_delta_activations(plain) == []
