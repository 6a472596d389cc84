"""Layer masking on tiny random CNNs of many families: all-ones masks give the plain output, hidden
content never leaks, all-hidden gives head(0), locality, per-layer masks (see the algorithm in
visionkit/methods/layer_masking/README.md).

Every family is built small, put in eval mode with randomised BatchNorm statistics and affine
parameters, converted, and checked against a deep copy of the plain model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from timm.models.resnet import BasicBlock as TimmBasic
from timm.models.resnet import Bottleneck as TimmBottleneck
from timm.models.resnet import ResNet as TimmResNet
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

from visionkit.methods.layer_masking import MaskedMap, convert, keep_masks
from visionkit.methods.layer_masking.layers import MaskedConv2d, MaskedModule
from visionkit.methods.layer_masking.protocols import paint

SIZE = 64
CLASSES = 5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def _tv_vgg() -> nn.Module:
    with torch.device("meta"):  # skip allocating VGG's 100M-parameter classifier
        model = VGG(make_layers([8, "M", 16, "M", 32, "M"], batch_norm=True), num_classes=CLASSES, init_weights=False)
    model.classifier = nn.Sequential(nn.Linear(32 * 49, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, CLASSES))
    model = model.to_empty(device="cpu")
    for name, p in model.named_parameters():
        nn.init.normal_(p, 0, 0.2 if name.endswith("weight") else 0.1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    return model


def _cifar_resnet() -> nn.Module:
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


#: name -> (builder, head on a zero pooled vector, family note)
FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "timm_test_resnet": lambda: timm.create_model("test_resnet", num_classes=CLASSES),  # deep stem, avg_down, Basic+Bottleneck
    "timm_resnet_basic": lambda: TimmResNet(TimmBasic, [1, 1, 1, 1], num_classes=CLASSES, channels=(16, 24, 32, 48)),
    "timm_resnet_bottleneck_se": lambda: TimmResNet(TimmBottleneck, [1, 1, 1, 1], num_classes=CLASSES,
                                                     channels=(8, 16, 24, 32), block_args={"attn_layer": "se"}),
    "timm_resnext": lambda: TimmResNet(TimmBottleneck, [1, 1, 1, 1], num_classes=CLASSES, channels=(16, 16, 24, 32),
                                        cardinality=4, base_width=8),
    "tv_resnet_basic": lambda: ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES),
    "tv_resnet_bottleneck": lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=CLASSES, width_per_group=16),
    "tv_resnext": lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=CLASSES, groups=4, width_per_group=4),
    "tv_resnet_cifar_stem": _cifar_resnet,
    "tv_vgg_bn": _tv_vgg,
    "timm_vgg": lambda: timm.models.vgg.VGG([8, "M", 16, "M", 32, "M"], num_classes=CLASSES, mlp_ratio=1 / 128),
    "timm_efficientnet": lambda: timm.create_model("test_efficientnet", num_classes=CLASSES),  # SE, depthwise, EdgeResidual
    "timm_mobilenetv3": lambda: timm.create_model("mobilenetv3_small_050", num_classes=CLASSES),  # hard-swish, SE
    "timm_regnety": lambda: timm.create_model("regnety_002", num_classes=CLASSES),  # groups, SE
    "timm_convnext": lambda: timm.create_model("test_convnext", num_classes=CLASSES),  # channels-last LayerNorm
    "tv_mobilenetv3": lambda: tvm.mobilenet_v3_small(num_classes=CLASSES, width_mult=0.5),
    "tv_efficientnet": lambda: tvm.efficientnet_b0(num_classes=CLASSES),
    "tv_regnety": lambda: tvm.regnet_y_400mf(num_classes=CLASSES),
    "tv_convnext": lambda: ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 48, 1), CNBlockConfig(48, None, 1)],
                                    num_classes=CLASSES),
}


def _randomise(model: nn.Module) -> nn.Module:
    """Random norm affines and head biases, then BatchNorm statistics calibrated on random images
    (and jittered), so that the random net passes image-dependent signal to its output; eval mode."""
    gen = torch.Generator().manual_seed(1)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and getattr(m, "weight", None) is not None:
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
            m.bias.data.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen))
    for p in model.parameters():  # layer scales (ConvNeXt gamma) start tiny; make them count
        if p.ndim == 1 and float(p.detach().abs().max()) < 1e-4:
            p.data.fill_(0.5)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.train()(images(8, seed=99))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        std = m.running_var.sqrt()
        m.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=gen))
        m.running_var.mul_(torch.rand(std.shape, generator=gen) + 0.5)
    return model.eval()


_CACHE: dict[str, tuple[nn.Module, nn.Module]] = {}


def pair(name: str) -> tuple[nn.Module, nn.Module]:
    """``(plain, converted)`` of a family, built once per session."""
    if name not in _CACHE:
        torch.manual_seed(0)
        plain = _randomise(FAMILIES[name]())
        _CACHE[name] = plain, convert(copy.deepcopy(plain))
    return _CACHE[name]


def cell_mask(batch: int, size: int = SIZE, cell: int = 8, hidden: float = 0.5, seed: int = 0) -> torch.Tensor:
    """``(B, 1, S, S)`` keep mask of random ``cell`` px squares, about ``hidden`` of them hidden."""
    gen = torch.Generator().manual_seed(seed)
    n = size // cell
    keep = (torch.rand(batch, 1, n, n, generator=gen) >= hidden).float()
    keep[:, :, 0, 0] = 1  # never all hidden
    return keep.repeat_interleave(cell, 2).repeat_interleave(cell, 3)


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def head_on_zeros(name: str, plain: nn.Module, batch: int) -> torch.Tensor:
    """The plain model's classifier applied to an all-zero pooled feature vector."""
    with torch.no_grad():
        if name == "timm_vgg":
            return plain.head.fc(torch.zeros(batch, plain.head.fc.in_features))
        if name.startswith("timm"):
            feats = plain.forward_features(images(1))
            return plain.forward_head(torch.zeros(batch, feats.shape[1], 1, 1))
        if isinstance(getattr(plain, "fc", None), nn.Linear):
            return plain.fc(torch.zeros(batch, plain.fc.in_features))
        if name == "tv_vgg_bn":
            return plain.classifier(torch.zeros(batch, 32 * 49))
        if name == "tv_convnext":
            return plain.classifier(torch.zeros(batch, 48, 1, 1))
        first = next(m for m in plain.classifier if isinstance(m, nn.Linear))
        return plain.classifier(torch.zeros(batch, first.in_features))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_oracles(name: str) -> None:
    """All-ones = plain; bit-identical under any hidden content; all-hidden = head(0), finite;
    zero gradient on hidden pixels; batch independence; keys unchanged; grey/black are sensitive."""
    plain, net = pair(name)
    assert list(net.state_dict()) == list(plain.state_dict())
    assert sum(isinstance(m, MaskedModule) for m in net.modules()) >= 5
    x, keep = images(3), cell_mask(3)
    with torch.no_grad():
        reference = plain(x)
        # 1. no mask / all-ones mask: the plain model
        assert torch.equal(net(x), reference)
        assert torch.allclose(net(x, keep_mask=torch.ones(3, 1, SIZE, SIZE)), reference, atol=1e-5, rtol=1e-5)
        # 2. hidden content never matters (noise, grey, black, huge values, NaN), pre-multiplied or not
        out = net(x, keep_mask=keep)
        assert not torch.allclose(out, reference, atol=1e-4), "the mask must change the output"
        for fill in (100 * torch.randn_like(x), torch.full_like(x, 0.5), torch.zeros_like(x),
                     torch.full_like(x, 1e6), torch.full_like(x, float("nan"))):
            assert torch.equal(net(torch.where(keep > 0, x, fill), keep_mask=keep), out)
        assert torch.equal(net(x * keep, keep_mask=keep.bool()), out)
        # 10. painted fills are not blind to the fill colour (the test above is sensitive)
        assert not torch.allclose(plain(paint(x, keep, "grey")), plain(paint(x, keep, "black")), atol=1e-4)
        # 3. all hidden: the head on a zero pooled vector, the same for every input, finite
        gone = net(x, keep_mask=torch.zeros(3, 1, SIZE, SIZE))
        assert torch.isfinite(gone).all()
        assert torch.allclose(gone, head_on_zeros(name, plain, 3), atol=1e-5)
        assert torch.equal(gone[0], gone[1])
        # 9. batch independence: sample 0 does not see the other samples' masks or images
        other = cell_mask(3, seed=7)
        other[0] = keep[0]
        y = x.clone()
        y[1:] = images(2, seed=3)
        assert torch.allclose(net(y, keep_mask=other)[0], out[0], atol=1e-6, rtol=0)
    # 2b. no layer reads the hidden positions of its input: garbage written there changes nothing
    gen = torch.Generator().manual_seed(5)

    def scribble(_m, _i, out):
        if isinstance(out, MaskedMap):
            noise = 1e3 * torch.randn(out.values.shape, generator=gen) * (1 - out.keep)
            return MaskedMap(out.values + noise, out.keep, out.channels_last)
        return None
    handles = [m.register_forward_hook(scribble) for m in net.modules() if isinstance(m, MaskedModule)]
    try:
        with torch.no_grad():
            assert torch.allclose(net(x, keep_mask=keep), out, atol=1e-5, rtol=1e-5)
    finally:
        for h in handles:
            h.remove()
    # 4. gradients: exactly zero on hidden pixels, finite and not all zero elsewhere
    xg = x.clone().requires_grad_(True)
    net(xg, keep_mask=keep).logsumexp(-1).sum().backward()
    hidden = (keep == 0).expand_as(x)
    assert torch.equal(xg.grad[hidden], torch.zeros(int(hidden.sum())))
    assert torch.isfinite(xg.grad).all() and float(xg.grad[~hidden].abs().sum()) > 0


def _outputs(model: nn.Module, names: list[str], run: Callable[[], object]) -> dict[str, object]:
    found: dict[str, object] = {}
    handles = []
    for name in names:
        def hook(_m, _i, out, name=name):
            found[name] = MaskedMap(out.values.clone(), out.keep) if isinstance(out, MaskedMap) else out.clone()
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return found


@pytest.mark.parametrize("name", ["timm_test_resnet", "tv_resnet_bottleneck", "timm_efficientnet", "timm_convnext",
                                  "tv_mobilenetv3", "tv_vgg_bn"])
def test_locality(name: str) -> None:
    """Wherever a layer's whole receptive field is visible (or zero padding), the masked
    activation equals the plain one on the unmasked image."""
    plain, net = pair(name)
    x = images(1)
    keep = torch.ones(1, 1, SIZE, SIZE)
    keep[..., 20:44, 24:48] = 0
    noisy = torch.where(keep > 0, x, 50 * torch.randn_like(x))
    names = [n for n, m in net.named_modules() if isinstance(m, MaskedModule)]
    masked = _outputs(net, names, lambda: net(x, keep_mask=keep))
    clean = _outputs(plain, names, lambda: plain(x))
    other = _outputs(plain, names, lambda: plain(noisy))
    checked = 0
    for n in names:
        if not isinstance(masked.get(n), MaskedMap):
            continue
        m = masked[n]
        values = m.values.permute(0, 3, 1, 2) if m.channels_last else m.values
        a, b = clean[n], other[n]
        if m.channels_last:
            a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
        field = ((a - b).abs().amax(1, keepdim=True) == 0).expand_as(a)  # untouched by hidden pixels
        if bool(field.any()):
            assert torch.allclose(values[field], a[field], atol=1e-4, rtol=1e-4), n
            checked += int(field.any(1).sum())
    assert checked > 100, f"only {checked} fully visible positions were compared"


def _stage_masks(net: nn.Module, keep: torch.Tensor, stages: list[str]) -> dict[str, torch.Tensor]:
    out = _outputs(net, stages, lambda: net(images(keep.shape[0]), keep_mask=keep))
    return {s: out[s].keep for s in stages}


def test_conv_output_masks_are_maxpools_of_their_input_masks() -> None:
    """Every conv's output mask has the output's shape, equals MaxPool(K, s, p, d) of its
    input mask, and stays binary."""
    for name in ["timm_test_resnet", "tv_resnext", "timm_regnety", "tv_convnext"]:
        _, net = pair(name)
        seen = []

        def hook(mod, inp, out, seen=seen):
            if isinstance(inp[0], MaskedMap):
                seen.append((mod, inp[0].keep, out))
        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, MaskedConv2d)]
        with torch.no_grad():
            net(images(2), keep_mask=cell_mask(2, cell=4))
        for h in handles:
            h.remove()
        assert len(seen) >= 5, name
        for mod, keep_in, out in seen:
            assert out.keep.shape[-2:] == out.values.shape[-2:]
            expected = F.max_pool2d(keep_in, mod.kernel_size, mod.stride, mod.padding, mod.dilation)
            assert torch.equal(out.keep, expected), (name, mod)
            assert bool(((out.keep == 0) | (out.keep == 1)).all())


def test_resnet_stage_masks() -> None:
    """ResNet stage masks are the stem mask subsampled per stride-2 stage (residual intersections
    undo the 3x3 dilation), for BasicBlock, Bottleneck, the CIFAR stem and timm's avg_down."""
    keep = cell_mask(2, cell=4, hidden=0.6)
    stages = ["layer1", "layer2", "layer3", "layer4"]
    stem = F.max_pool2d(F.max_pool2d(keep, 7, 2, 3), 3, 2, 1)
    for name in ["tv_resnet_basic", "tv_resnet_bottleneck", "timm_resnet_basic"]:
        masks = _stage_masks(pair(name)[1], keep, stages)
        for i, s in enumerate(stages):
            step = 2 ** i
            assert torch.equal(masks[s], stem[..., ::step, ::step]), (name, s)
    cifar = _stage_masks(pair("tv_resnet_cifar_stem")[1], keep, stages)
    stem = F.max_pool2d(keep, 3, 1, 1)
    for i, s in enumerate(stages):
        assert torch.equal(cifar[s], stem[..., :: 2**i, :: 2**i]), s
    # timm test_resnet: deep stem (3x3 s2, 3x3, 3x3), max-pool, then avg_down shortcuts (2x2 "any visible")
    deep = _stage_masks(pair("timm_test_resnet")[1], keep, stages)
    m = F.max_pool2d(F.max_pool2d(F.max_pool2d(keep, 3, 2, 1), 3, 1, 1), 3, 1, 1)
    m = F.max_pool2d(m, 3, 2, 1)
    assert torch.equal(deep["layer1"], m)
    for s in stages[1:]:
        m = F.max_pool2d(m, 2, 2, ceil_mode=True)
        assert torch.equal(deep[s], m), s
    assert set(keep_masks(pair("timm_test_resnet")[1], images(2), keep)) >= {"conv1.0", "layer4.0.conv2"}
