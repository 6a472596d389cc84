"""Layer masking on timm VGG at 32, 64 and 224 px: ``ConvMlp`` (the 7x7-conv pre-logits) enlarges
maps smaller than its kernel with an adaptive pool, which a masked map must go through too.

The models are timm's real ``vgg11_bn`` and ``vgg11`` feature stacks and heads, random weights,
with a 64-wide ``ConvMlp`` hidden layer (``mlp_ratio=1/64``) instead of 4096 to stay fast.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

from tests.methods.layer_masking.test_convert import _randomise, cell_mask
from visionkit.methods.layer_masking import MaskedMap, UnsupportedLayerError, convert, unsupported_modules
from visionkit.methods.layer_masking.layers import MaskedModule

CLASSES = 5
#: Masked forwards with an all-ones mask and plain forwards take different code paths
#: (masked means divide by ``share + 1e-8``): equal up to float32 rounding.
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Small tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


_CACHE: dict[str, tuple[nn.Module, nn.Module]] = {}


def pair(name: str) -> tuple[nn.Module, nn.Module]:
    """``(plain, converted)`` timm VGG, randomised BatchNorm statistics, eval mode, built once."""
    if name not in _CACHE:
        torch.manual_seed(0)
        plain = _randomise(timm.create_model(name, pretrained=False, num_classes=CLASSES, mlp_ratio=1 / 64))
        _CACHE[name] = plain, convert(copy.deepcopy(plain))
    return _CACHE[name]


def images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_convmlp_is_converted_not_walked_through() -> None:
    """The pre-logits block is a converted module (its own masked forward), and so are its convs."""
    _, net = pair("vgg11_bn")
    assert isinstance(net.pre_logits, MaskedModule)
    assert isinstance(net.pre_logits.fc1, MaskedModule) and isinstance(net.pre_logits.act2, MaskedModule)
    assert unsupported_modules(net) == []


# 32 px: the features end at 1x1 (enlarged to 7x7); 64 px: 2x2; 224 px: 7x7 (no pool).
@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("name", ["vgg11_bn", "vgg11"])
def test_vgg_masked_forward_ignores_hidden_pixels(name: str, size: int) -> None:
    plain, net = pair(name)
    batch = 1 if size == 224 else 2
    x = images(batch, size)
    keep = cell_mask(batch, size=size, cell=size // 8, hidden=0.5)
    with torch.no_grad():
        reference = plain(x)
        assert torch.equal(net(x), reference)  # no mask: the plain forward itself
        torch.testing.assert_close(net(x, keep_mask=torch.ones_like(keep)), reference, **TOL)
        out = net(x, keep_mask=keep)
        assert not torch.allclose(out, reference, atol=1e-3), "the mask must change the logits"
        garbage = torch.where(keep > 0, x, 100 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
        # hidden pixels never reach the network (zeroed at the entry): bit-identical logits
        assert torch.equal(net(garbage, keep_mask=keep), out)


@pytest.mark.parametrize("size", [32, 64])
def test_no_layer_reads_hidden_positions(size: int) -> None:
    """Garbage written into the hidden positions of every masked layer's input (the ConvMlp's
    enlarged map included) leaves the logits unchanged, up to float32 rounding."""
    _, net = pair("vgg11_bn")
    x, keep = images(2, size), cell_mask(2, size=size, cell=size // 8, hidden=0.5)
    with torch.no_grad():
        out = net(x, keep_mask=keep)
    gen = torch.Generator().manual_seed(5)
    seen: list[tuple[int, int]] = []

    def scribble(_m, args):
        if isinstance(args[0], MaskedMap):
            m = args[0]
            seen.append(tuple(m.values.shape[-2:]))
            noise = 1e3 * torch.randn(m.values.shape, generator=gen) * (1 - m.keep)
            return (MaskedMap(m.values + noise, m.keep, m.channels_last), *args[1:])
        return None

    handles = [m.register_forward_pre_hook(scribble) for m in net.modules() if isinstance(m, MaskedModule)]
    try:
        with torch.no_grad():
            torch.testing.assert_close(net(x, keep_mask=keep), out, **TOL)
    finally:
        for h in handles:
            h.remove()
    assert (7, 7) in seen  # fc1 read the features' small map enlarged to its 7x7 kernel


def test_all_hidden_is_the_same_finite_output_for_every_image() -> None:
    _, net = pair("vgg11")
    x = images(2, 32)
    with torch.no_grad():
        gone = net(x, keep_mask=torch.zeros(2, 1, 32, 32))
    assert torch.isfinite(gone).all()
    assert torch.equal(gone[0], gone[1])


def test_gradients_are_zero_on_hidden_pixels() -> None:
    _, net = pair("vgg11_bn")
    x, keep = images(2, 32).requires_grad_(True), cell_mask(2, size=32, cell=4)
    net(x, keep_mask=keep).logsumexp(-1).sum().backward()
    hidden = (keep == 0).expand_as(x)
    assert torch.equal(x.grad[hidden], torch.zeros(int(hidden.sum())))
    assert float(x.grad[~hidden].abs().sum()) > 1e-6


def test_convmlp_as_the_root_is_refused() -> None:
    """A lone ConvMlp is a layer, not a model: convert() refuses it before changing anything."""
    with pytest.raises(UnsupportedLayerError, match="root"):
        convert(timm.models.vgg.ConvMlp(8, 16, 7).eval())
