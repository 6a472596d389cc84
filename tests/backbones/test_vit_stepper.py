"""``ViTStepper`` reproduces ``forward_features`` exactly.

Keep this in the default lane: the stepper relies on timm internals (``_pos_embed``), so a timm
upgrade that changes them must fail here, loudly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import make_resnet, make_vit
from visionkit.backbones.vit_stepper import ViTStepper, insert_tokens, remove_tokens
from visionkit.tuners import BaseTuner

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.mark.parametrize("name", ["test_vit", "test_vit2", "test_vit3"])
def test_noop_callbacks_reproduce_forward_features_exactly(name):
    model = make_vit(name).eval()
    x = torch.randn(2, 3, 32, 32)
    stepper = ViTStepper(model)
    same = stepper.forward_features(x, pre_block=lambda i, t: None, post_block=lambda i, t: t)
    assert torch.equal(same, model.forward_features(x))
    assert torch.equal(stepper(x), model(x))


def test_exact_in_train_mode_with_drop_path():
    model = make_vit(drop_path_rate=0.2, proj_drop_rate=0.1).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    want = model.forward_features(x)
    torch.manual_seed(1)
    got = ViTStepper(model).forward_features(x)
    assert torch.equal(got, want)


def test_grad_checkpointing_is_honoured():
    model = make_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    want = model.forward_features(x)
    model.set_grad_checkpointing(True)
    assert torch.equal(ViTStepper(model).forward_features(x), want)


def test_injected_tokens_removed_after_each_block_keep_patch_count(vit, images):
    k = 3
    tokens = nn.Parameter(torch.randn(1, k, 64))
    seen_inside, seen_between = [], []
    vit.requires_grad_(False)

    def pre(i: int, x: torch.Tensor) -> torch.Tensor:
        seen_between.append(x.shape[1])
        return insert_tokens(x, tokens)

    def post(i: int, x: torch.Tensor) -> torch.Tensor:
        seen_inside.append(x.shape[1])
        rest, removed = remove_tokens(x, k)
        assert removed.shape == (2, k, 64)
        return rest

    stepper = ViTStepper(vit)
    out = stepper.run(images, pre, post)
    grid = out.grid
    assert grid == (8, 8)
    patches = grid[0] * grid[1]
    assert seen_between == [patches + 1] * 6 and seen_inside == [patches + 1 + k] * 6
    assert out.tokens.shape == (2, patches + out.num_prefix_tokens, 64)
    # not out.tokens.sum(): the final LayerNorm (weight 1, bias 0) makes every token's channel sum 0, so that
    # gradient is 0 in exact arithmetic (float32 rounding left ~1e-7). A non-constant channel weighting is not.
    (out.tokens * torch.linspace(-1, 1, 64)).sum().backward()
    # gradients flow through frozen blocks: norm measured ~2 (seeds 0-3), rounding noise would be ~1e-7
    assert tokens.grad is not None and tokens.grad.norm() > 1e-3


def test_insert_and_remove_are_inverse():
    x = torch.randn(2, 5, 4)
    new = torch.randn(1, 2, 4)
    y = insert_tokens(x, new, position=1)
    assert y.shape == (2, 7, 4) and torch.equal(y[:, 1:3], new.expand(2, -1, -1))
    rest, removed = remove_tokens(y, 2, position=1)
    assert torch.equal(rest, x) and torch.equal(removed, new.expand(2, -1, -1))


def test_upto_runs_a_prefix_of_the_blocks(vit, images):
    from visionkit.backbones.intermediates import get_intermediates

    out = ViTStepper(vit).run(images, norm=False, upto=2)
    want = get_intermediates(vit, images, indices=[2])
    assert torch.equal(out.tokens[:, 1:], want.features[0])
    with pytest.raises(ValueError, match="upto=6 is out of range"):
        ViTStepper(vit).run(images, upto=6)


def test_bad_callback_and_bad_model(vit, images):
    with pytest.raises(ValueError, match="block callback at block 0 returned"):
        ViTStepper(vit).run(images, pre_block=lambda i, x: x[:, :, :3])
    with pytest.raises(TypeError, match="needs a timm VisionTransformer"):
        ViTStepper(make_resnet())


def test_accepts_a_tuner(vit, images):
    assert torch.equal(ViTStepper(BaseTuner(vit)).forward_features(images), vit.forward_features(images))
