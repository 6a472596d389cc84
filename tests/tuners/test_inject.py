"""``replace_modules`` names what it replaced and collects matches before replacing; identity wrappers
(all-ones masks, zero-threshold deltas) reproduce the plain outputs exactly."""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn

from visionkit.tuners.inject import matching_modules, replace_modules

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


class MaskedOutput(nn.Module):
    """Layer-masking style wrapper: ``base(x) * mask`` (an all-ones mask is the identity)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("mask", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) * self.mask


class DeltaActivation(nn.Module):
    """Delta-activation style wrapper: pass a unit's new value only where it changed by more than ``threshold``.

    With ``threshold=0`` every changed value passes and unchanged ones equal the previous value,
    so the output is exactly ``base(x)``.
    """

    def __init__(self, base: nn.Module, threshold: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.threshold = threshold
        self.previous: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.previous is None or self.previous.shape != y.shape:
            out = y
        else:
            out = torch.where((y - self.previous).abs() > self.threshold, y, self.previous)
        self.previous = out.detach()
        return out


def test_identity_masks_reproduce_vit_outputs_exactly(vit, images):
    before = vit(images)
    names = replace_modules(vit, nn.GELU, lambda name, m: MaskedOutput(m))
    assert names == [f"blocks.{i}.mlp.act" for i in range(6)]
    assert all(isinstance(vit.get_submodule(n), MaskedOutput) for n in names)
    assert torch.equal(vit(images), before)


def test_identity_masks_on_every_conv_and_norm_of_a_cnn(resnet):
    x = torch.randn(2, 3, 32, 32)
    before = resnet(x)
    names = replace_modules(resnet, (nn.Conv2d, nn.BatchNorm2d), lambda name, m: MaskedOutput(m))
    expected = [n for n, m in resnet.named_modules() if isinstance(m, MaskedOutput)]
    assert names == expected and len(names) > 10
    assert torch.equal(resnet(x), before)


def test_delta_threshold_zero_is_exact_over_a_sequence(resnet):
    frames = [torch.randn(1, 3, 32, 32) for _ in range(3)]
    frames.insert(2, frames[1].clone())  # an unchanged frame
    want = [resnet(f) for f in frames]
    names = replace_modules(resnet, re.compile(r"(act1|layer\d\.\d\.act\d)"), lambda n, m: DeltaActivation(m, 0.0))
    assert names and all(n == "act1" or n.startswith("layer") for n in names)
    got = [resnet(f) for f in frames]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_predicate_function_and_mode_kept(vit):
    vit.train()
    vit.blocks[0].mlp.fc1.eval()
    names = replace_modules(vit, lambda name, m: name.endswith("mlp.fc1"), lambda n, m: MaskedOutput(m))
    assert len(names) == 6
    assert vit.blocks[0].mlp.fc1.training is False and vit.blocks[1].mlp.fc1.training is True


def test_matches_are_collected_before_replacing(vit):
    # the factory wraps the old block; the wrapper's inner blocks must not be visited again
    calls = []

    def factory(name: str, module: nn.Module) -> nn.Module:
        calls.append(name)
        return MaskedOutput(module)

    names = replace_modules(vit, r"blocks\.\d+", factory)
    assert names == calls == [f"blocks.{i}" for i in range(6)]
    # descendants of a match are skipped (blocks.0.attn is not matched by a "blocks.*" prefix)
    assert [n for n, _ in matching_modules(vit, r"blocks.*")] == ["blocks"]


def test_shared_module_replaced_under_every_name():
    shared = nn.ReLU()
    net = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
    names = replace_modules(net, nn.ReLU, lambda n, m: MaskedOutput(m))
    assert names == ["1"]
    assert net[1] is net[3] and isinstance(net[3], MaskedOutput)


def test_errors():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="root module"):
        replace_modules(nn.Linear(2, 2), nn.Linear, lambda n, m: m)
    with pytest.raises(ValueError, match="no sub-module of Sequential matches"):
        replace_modules(net, nn.Conv2d, lambda n, m: m, strict=True)
    assert replace_modules(net, nn.Conv2d, lambda n, m: m) == []
    with pytest.raises(ValueError, match="factory returned int for '0'"):
        replace_modules(net, nn.Linear, lambda n, m: 3)
    with pytest.raises(TypeError, match="target must be"):
        replace_modules(net, 42, lambda n, m: m)
