"""``get_intermediates``: features equal block hooks and the final features feed the head; index
semantics and ``stop_early``; NCHW <-> NLC; hook fallback, tuner-wrapped models and open_clip towers;
bad indices, formats and module names are one-line errors."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from tests.helpers import make_resnet, make_tiny_clip, make_vit
from visionkit.backbones import ActivationRecorder, ModuleNameError
from visionkit.backbones.intermediates import get_intermediates, num_levels, take_indices
from visionkit.backbones.vit_stepper import ViTStepper
from visionkit.tuners import BaseTuner

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

DEPTH = 6


# ---- intermediates = hooks; final = forward_features; head(final) = model(x) ----------------
def test_vit_intermediates_equal_block_hooks(vit, images):
    out = get_intermediates(vit, images, indices=None, output_fmt="NLC", prefix_tokens=True)
    names = [f"blocks.{i}" for i in range(DEPTH)]
    with ActivationRecorder(vit, names) as rec:
        vit(images)
    assert out.source == "timm" and out.fmt == "NLC" and out.indices == list(range(DEPTH))
    assert out.grid == (8, 8) and out.num_levels == DEPTH
    for i, name in enumerate(names):
        block = rec[name]
        assert (out.prefix[i] - block[:, :1]).abs().max() <= 1e-6
        assert (out.features[i] - block[:, 1:]).abs().max() <= 1e-6
        assert out.features[i].shape == (2, 64, 64) and out.prefix[i].shape == (2, 1, 64)


def test_vit_final_feeds_head(vit, images):
    out = get_intermediates(vit, images)
    assert torch.equal(out.final, vit.forward_features(images))
    assert torch.equal(vit.forward_head(out.final), vit(images))


def test_hook_strategy_equals_timm_on_vit(vit, images):
    timm_out = get_intermediates(vit, images, indices=[1, 4])
    hook_out = get_intermediates(vit, images, indices=[1, 4], strategy="hooks")
    assert hook_out.source == "hooks" and hook_out.modules == ["blocks.1", "blocks.4"]
    for a, b, pa, pb in zip(timm_out.features, hook_out.features, timm_out.prefix, hook_out.prefix, strict=True):
        assert torch.equal(a, b) and torch.equal(pa, pb)
    assert torch.equal(timm_out.final, hook_out.final)


# ---- index semantics and stop_early -------------------------------------------------------
def test_int_indices_mean_last_n(vit, images):
    every = get_intermediates(vit, images)
    last2 = get_intermediates(vit, images, indices=2)
    assert last2.indices == [DEPTH - 2, DEPTH - 1]
    for got, want in zip(last2.features, every.features[-2:], strict=True):
        assert torch.equal(got, want)


def test_negative_index_equals_absolute(vit, images):
    neg = get_intermediates(vit, images, indices=[-1])
    pos = get_intermediates(vit, images, indices=[DEPTH - 1])
    assert neg.indices == pos.indices == [DEPTH - 1]
    assert torch.equal(neg.features[0], pos.features[0])


def test_stop_early_gives_same_intermediates(vit, images):
    full = get_intermediates(vit, images, indices=[0, 2], stop_early=False)
    early = get_intermediates(vit, images, indices=[0, 2], stop_early=True)
    for a, b in zip(full.features, early.features, strict=True):
        assert torch.equal(a, b)
    assert full.final is not None
    assert early.final is None  # timm would return norm(block 2) here; visionkit refuses to mislabel it
    last = get_intermediates(vit, images, indices=[-1], stop_early=True)
    assert torch.equal(last.final, vit.forward_features(images))


def test_features_follow_requested_order(vit, images):
    out = get_intermediates(vit, images, indices=[4, 1])
    every = get_intermediates(vit, images)
    assert out.indices == [4, 1]
    assert torch.equal(out.features[0], every.features[4]) and torch.equal(out.features[1], every.features[1])


def test_norm_applies_final_norm(vit, images):
    names = [f"blocks.{i}" for i in range(DEPTH)]
    with ActivationRecorder(vit, names) as rec:
        vit(images)
    out = get_intermediates(vit, images, norm=True)
    for i, name in enumerate(names):
        assert (out.features[i] - vit.norm(rec[name])[:, 1:]).abs().max() <= 1e-6


def test_prefix_tokens_optional(vit, images):
    assert get_intermediates(vit, images, prefix_tokens=False).prefix is None


# ---- NCHW <-> NLC ---------------------------------------------------------------------------------
def test_nchw_is_reshaped_nlc(vit, images):
    nlc = get_intermediates(vit, images, output_fmt="NLC")
    nchw = get_intermediates(vit, images, output_fmt="NCHW")
    assert nchw.fmt == "NCHW" and nchw.grid == (8, 8)
    for tokens, maps in zip(nlc.features, nchw.features, strict=True):
        assert maps.shape == (2, 64, 8, 8)
        assert torch.equal(maps, tokens.reshape(2, 8, 8, 64).permute(0, 3, 1, 2))


def test_nchw_follows_dynamic_input_size(images):
    model = make_vit().eval()  # test_vit has dynamic_img_size=True
    x = torch.randn(1, 3, 48, 32)
    out = get_intermediates(model, x, indices=[-1], output_fmt="NCHW")
    assert out.grid == (12, 8) and out.features[0].shape == (1, 64, 12, 8)


# ---- CNNs: stages, NCHW native, NLC by flattening, hooks agree -----------------------------------------
def test_resnet_levels_and_formats(resnet):
    x = torch.randn(2, 3, 64, 64)
    out = get_intermediates(resnet, x)
    assert out.source == "timm" and out.fmt == "NCHW" and out.num_levels == 5
    assert out.grids == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)] and out.grid is None
    assert out.prefix is None
    assert torch.equal(out.final, resnet.forward_features(x))
    nlc = get_intermediates(resnet, x, output_fmt="NLC")
    assert nlc.fmt == "NLC" and nlc.grids == out.grids
    for maps, tokens in zip(out.features, nlc.features, strict=True):
        assert torch.equal(tokens, maps.flatten(2).transpose(1, 2))
    hooks = get_intermediates(resnet, x, strategy="hooks")
    assert hooks.modules == ["act1", "layer1", "layer2", "layer3", "layer4"]
    for a, b in zip(out.features, hooks.features, strict=True):
        assert torch.equal(a, b)


def test_resnet_stop_early_with_hooks_skips_later_stages(resnet):
    x = torch.randn(1, 3, 64, 64)
    ran = []
    handle = resnet.layer4.register_forward_hook(lambda *_: ran.append(1))
    try:
        out = get_intermediates(resnet, x, indices=[1], stop_early=True, strategy="hooks")
    finally:
        handle.remove()
    assert ran == [] and out.final is None and out.features[0].shape == (1, 32, 16, 16)


# ---- hook fallback for models without forward_intermediates -------------------------------------------
class PlainNet(nn.Module):
    """A non-timm CNN: no forward_intermediates, no feature_info."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def test_hook_fallback_for_plain_models():
    net = PlainNet().eval()
    x = torch.randn(2, 3, 16, 16)
    out = get_intermediates(net, x, modules=["stem", "body.2"])
    assert out.source == "hooks" and out.indices == [0, 1]
    assert torch.equal(out.features[0], net.stem(x))
    assert torch.equal(out.features[1], net.body(net.stem(x)))
    assert torch.equal(out.final, net(x))
    with pytest.raises(ValueError, match="pass modules"):
        get_intermediates(net, x)


class InfoNet(PlainNet):
    """A CNN with timm-style ``feature_info`` but no ``forward_intermediates``."""

    feature_info = [{"module": "stem"}, {"module": "body.0"}, {"module": "body.2"}]


def test_auto_falls_back_to_hooks_with_a_log(caplog):
    net = InfoNet().eval()
    x = torch.randn(2, 3, 16, 16)
    with caplog.at_level(logging.INFO, logger="visionkit.backbones.intermediates"):
        out = get_intermediates(net, x, indices=2)
    assert out.source == "hooks" and out.modules == ["body.0", "body.2"] and out.indices == [1, 2]
    assert "no forward_intermediates" in caplog.text
    assert torch.equal(out.features[1], net.body(net.stem(x)))


def test_tuner_wrapped_backbone(vit, images):
    wrapped = BaseTuner(vit)
    a = get_intermediates(wrapped, images, indices=[-2])
    b = get_intermediates(vit, images, indices=[-2])
    assert torch.equal(a.features[0], b.features[0]) and a.indices == [DEPTH - 2]


def test_include_embedding_is_hidden_state_zero(vit, images):
    out = get_intermediates(vit, images, include_embedding=True)
    tokens = ViTStepper(vit).embed(images)
    assert torch.equal(out.embedding, tokens[:, 1:]) and torch.equal(out.embedding_prefix, tokens[:, :1])
    nchw = get_intermediates(vit, images, include_embedding=True, output_fmt="NCHW")
    assert nchw.embedding.shape == (2, 64, 8, 8)


def test_registers_and_no_class_token():
    model = make_vit("test_vit2").eval()
    x = torch.randn(2, 3, 32, 32)
    out = get_intermediates(model, x, indices=1)
    n = model.num_prefix_tokens
    assert out.prefix[0].shape[1] == n and out.features[0].shape[1] == 64
    assert torch.equal(out.final, model.forward_features(x))


# ---- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("indices", "needle"),
    [([DEPTH], f"layer index {DEPTH} is out of range"), ([-DEPTH - 1], f"layer index {-DEPTH - 1}"),
     (DEPTH + 1, f"indices={DEPTH + 1}"), (0, "indices=0"), ([], "empty"), ([1, 1 - DEPTH], "same layer twice")],
)
def test_bad_indices_raise_one_line_value_error(vit, images, indices, needle):
    with pytest.raises(ValueError) as info:
        get_intermediates(vit, images, indices=indices)
    message = str(info.value)
    assert needle in message and "\n" not in message
    if isinstance(indices, list) and len(indices) == 1:
        assert f"valid: {-DEPTH}..{DEPTH - 1}" in message


def test_bad_index_on_cnn_names_stage_range(resnet):
    with pytest.raises(ValueError, match=r"layer index 5 is out of range for ResNet with 5 layers \(valid: -5\.\.4\)"):
        get_intermediates(resnet, torch.randn(1, 3, 32, 32), indices=[5])


def test_bad_index_with_hooks(vit, images):
    with pytest.raises(ValueError, match="valid: -6..5"):
        get_intermediates(vit, images, indices=[9], strategy="hooks")


def test_unknown_hook_module_is_named(images):
    with pytest.raises(ModuleNameError, match="no module named 'stem.9'"):
        get_intermediates(PlainNet(), images, modules=["stem.9"])


def test_bad_format_and_tower(vit, images):
    with pytest.raises(ValueError, match="output_fmt"):
        get_intermediates(vit, images, output_fmt="NHWC")
    with pytest.raises(ValueError, match="tower='text'"):
        get_intermediates(vit, images, tower="text")


def test_take_indices_and_num_levels(vit, resnet):
    assert take_indices(6, None) == [0, 1, 2, 3, 4, 5]
    assert take_indices(6, 3) == [3, 4, 5]
    assert take_indices(6, [-1, 0]) == [5, 0]
    assert num_levels(vit) == DEPTH and num_levels(resnet) == 5
    assert num_levels(make_resnet(), modules=["layer1"]) == 1


# ---- open_clip: image and text towers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip():
    pytest.importorskip("open_clip")
    torch.manual_seed(0)
    return make_tiny_clip()


def test_open_clip_image_tower(clip):
    x = torch.randn(2, 3, 32, 32)
    out = get_intermediates(clip, x)
    assert out.source == "open_clip" and out.fmt == "NLC" and out.grid == (4, 4) and out.num_levels == 2
    assert out.features[0].shape == (2, 16, 32) and out.prefix[0].shape == (2, 1, 32)
    assert torch.equal(out.final, clip.encode_image(x))  # pooled + projected, not L2-normalised
    with ActivationRecorder(clip.visual, ["transformer.resblocks.0", "transformer.resblocks.1"]) as rec:
        clip.encode_image(x)
    for i in range(2):
        block = rec[f"transformer.resblocks.{i}"]
        assert torch.equal(out.features[i], block[:, 1:]) and torch.equal(out.prefix[i], block[:, :1])
    tower = get_intermediates(clip.visual, x, indices=[-1], output_fmt="NCHW", norm=True)
    assert tower.features[0].shape == (2, 32, 4, 4) and tower.indices == [1]
    normed = clip.visual.ln_post(rec["transformer.resblocks.1"])[:, 1:]
    assert torch.allclose(tower.features[0], normed.reshape(2, 4, 4, 32).permute(0, 3, 1, 2), atol=1e-6)
    emb = get_intermediates(clip, x, include_embedding=True)
    assert emb.embedding.shape == (2, 16, 32) and emb.embedding_prefix.shape == (2, 1, 32)


def test_open_clip_text_tower(clip):
    text = torch.randint(1, 63, (2, 12))
    out = get_intermediates(clip, text, tower="text")
    assert out.source == "open_clip" and out.fmt == "NLC" and out.num_levels == 3 and out.grid is None
    assert [f.shape for f in out.features] == [(2, 12, 32)] * 3
    assert torch.allclose(out.final, clip.encode_text(text), atol=1e-6)
    last = get_intermediates(clip, text, tower="text", indices=1)
    assert last.indices == [2] and torch.equal(last.features[0], out.features[2])
    with pytest.raises(ValueError, match="no spatial grid"):
        get_intermediates(clip, text, tower="text", output_fmt="NCHW")
    with pytest.raises(ValueError, match=r"layer index 3 is out of range .* \(valid: -3\.\.2\)"):
        get_intermediates(clip, text, tower="text", indices=[3])


def test_open_clip_custom_text_and_bare_text_tower():
    pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP
    from open_clip.transformer import TextTransformer

    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32)
    text_cfg = CLIPTextCfg(context_length=12, vocab_size=64, width=32, heads=2, layers=3)
    model = CustomTextCLIP(embed_dim=16, vision_cfg=vision, text_cfg=text_cfg).eval()
    text = torch.randint(1, 63, (2, 12))
    out = get_intermediates(model, text, tower="text", indices=[0, -1], stop_early=True)
    assert out.indices == [0, 2] and torch.allclose(out.final, model.encode_text(text), atol=1e-6)
    early = get_intermediates(model, text, tower="text", indices=[0], stop_early=True)
    assert early.final is None and torch.equal(early.features[0], out.features[0])

    # CoCa-style tower: a class token appended at the end of the sequence is returned as the "prefix"
    tower = TextTransformer(context_length=12, vocab_size=64, width=32, heads=2, layers=2, embed_cls=True, output_dim=16)
    tower.eval()
    res = get_intermediates(tower, text)  # tower=None: a bare text tower is recognised
    assert res.num_levels == 2 and res.features[0].shape == (2, 12, 32) and res.prefix[0].shape == (2, 1, 32)
    assert torch.allclose(res.final, tower(text), atol=1e-6)
    with pytest.raises(ValueError, match="text tower; use tower='text'"):
        get_intermediates(tower, text, tower="image")
