"""UniPT on tiny random models: both variants equal their equations written out literally
(visionkit/methods/unipt/README.md, "Equations"), masking, parameter counts, a frozen backbone,
training memory, open_clip towers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit.backbones import open_clip_hidden_states, vit_hidden_states
from visionkit.memory import measure_training_step
from visionkit.methods.unipt import UniPT, UniPTClassifier, UniPTError, UniPTTower, interaction_weights


def tiny_vit(**kwargs) -> nn.Module:
    """A timm ViT at 32 px with 4 px patches (64 patch tokens + class token), width 64, depth 4."""
    from timm.models.vision_transformer import VisionTransformer

    args = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 2, "num_classes": 5}
    return VisionTransformer(**{**args, **kwargs})


def states(batch: int = 3, tokens: int = 7, dims=(12, 12, 16, 8), seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, d, generator=gen, dtype=torch.float64) for d in dims]


def reference_token(unipt: UniPT, hs, mask=None):
    """The token variant written out literally (explicit identity matrix, normalised matrix, stack)."""
    t = [down(h) for down, h in zip(unipt.down, hs, strict=True)]
    a_tokens = t[-1]
    m = torch.ones(a_tokens.shape[:2], dtype=a_tokens.dtype) if mask is None else mask.to(a_tokens.dtype)
    pooled = lambda x: (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # noqa: E731
    a = pooled(a_tokens)
    eye = torch.eye(a_tokens.shape[1], dtype=a_tokens.dtype)
    zs, logits = [], []
    for tl in t[:-1]:
        s = torch.relu((a_tokens @ tl.transpose(1, 2)) * m[:, None, :])
        s = s / s.abs().sum(-1, keepdim=True).clamp(min=1e-6)
        zs.append((s + eye) @ tl)
        logits.append(unipt.gate(a * pooled(tl)))
    pi = torch.softmax(torch.cat(logits, 1), 1)
    z = (torch.stack(zs, 1) * pi[:, :, None, None]).sum(1)
    return unipt.up(a_tokens + unipt.projection(z)), pi


def reference_global(unipt: UniPT, hs, anchor, position, mask=None):
    """The CLIP4Clip variant written out literally."""
    t = [down(h) for down, h in zip(unipt.down, hs, strict=True)]
    q = unipt.anchor_down(anchor.unsqueeze(1))
    m = torch.ones(t[0].shape[:2], dtype=t[0].dtype) if mask is None else mask.to(t[0].dtype)
    rows = torch.arange(len(anchor))
    zs, logits = [], []
    for tl in t:
        s = torch.relu((q @ tl.transpose(1, 2)) * m[:, None, :])
        s = s / s.abs().sum(-1, keepdim=True).clamp(min=1e-6)
        zs.append(s @ tl + tl[rows, position].unsqueeze(1))
        mean = (tl * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        logits.append(unipt.gate(q[:, 0] * mean))
    pi = torch.softmax(torch.cat(logits, 1), 1)
    z = (torch.stack(zs, 1) * pi[:, :, None, None]).sum(1)
    return (anchor.unsqueeze(1) + unipt.up(z)).squeeze(1), pi


# ---- the side network -------------------------------------------------------------------------------
def test_token_variant_matches_the_literal_formula():
    torch.manual_seed(0)
    unipt = UniPT([12, 12, 16, 8], embed_dim=10, reduction=2).double()
    hs = states()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0]])
    for m in (None, mask):
        out = unipt(hs, m)
        ref, pi = reference_token(unipt, hs, m)
        assert out.features.shape == (3, 7, 10)
        torch.testing.assert_close(out.features, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.layer_weights, pi, rtol=1e-10, atol=1e-10)


def test_global_variant_matches_the_literal_formula():
    torch.manual_seed(1)
    unipt = UniPT([12, 12, 16, 8], embed_dim=6, reduction=1, variant="global").double()
    hs = states()
    anchor = torch.randn(3, 6, dtype=torch.float64)
    position = torch.tensor([0, 3, 6])
    mask = torch.arange(7)[None] <= position[:, None]
    for m in (None, mask):
        out = unipt(hs, m, anchor=anchor, position=position)
        ref, pi = reference_global(unipt, hs, anchor, position, m)
        assert out.features.shape == (3, 6) and out.layer_weights.shape == (3, 4)
        torch.testing.assert_close(out.features, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.layer_weights, pi, rtol=1e-10, atol=1e-10)


def test_interaction_weights_are_l1_rows_nonnegative_and_ignore_masked_keys():
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(4, 5, 8, generator=gen), torch.randn(4, 9, 8, generator=gen)
    k[0] = 0.0  # every score 0 -> the row stays 0 (no division by zero)
    mask = torch.ones(4, 9)
    mask[1, 4:] = 0
    w = interaction_weights(q, k, mask)
    sums = w.sum(-1)
    assert (w >= 0).all()
    assert torch.equal(w[0], torch.zeros_like(w[0]))
    positive = (q[1:] @ k[1:].transpose(1, 2) * mask[1:, None]).clamp_min(0).sum(-1) > 0
    torch.testing.assert_close(sums[1:][positive], torch.ones(int(positive.sum())))
    assert torch.equal(w[1, :, 4:], torch.zeros(5, 5))


def test_identity_term_is_added_after_normalisation():
    """With every interaction score <= 0, each target contributes exactly its own token (the +I)."""
    unipt = UniPT([4, 4, 4], embed_dim=4, reduction=1).double()
    with torch.no_grad():
        for down in unipt.down:
            down[0].weight.copy_(torch.eye(4))
            down[0].bias.zero_()
        unipt.gate.weight.zero_()
        unipt.gate.bias.zero_()
    # anchor tokens and targets in opposite directions: all scores negative -> relu -> 0
    base = torch.tensor([[1.0, -1.0, 2.0, 0.5]], dtype=torch.float64).expand(1, 3, 4) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)[None, :, None]
    hs = [-base, -2 * base, base]
    t = [unipt.down[i](hs[i]) for i in range(3)]
    weights = interaction_weights(t[2], t[0])
    assert torch.equal(weights, torch.zeros_like(weights))
    expected = unipt.up(t[2] + unipt.projection(0.5 * (t[0] + t[1])))
    torch.testing.assert_close(unipt(hs).features, expected)


def test_layer_weights_sum_to_one_and_zero_gate_gives_the_plain_mean():
    torch.manual_seed(3)
    unipt = UniPT([12, 12, 16, 8], embed_dim=10, reduction=2).double()
    hs = states()
    pi = unipt(hs).layer_weights
    assert (pi >= 0).all()
    torch.testing.assert_close(pi.sum(1), torch.ones(3, dtype=torch.float64))
    assert not torch.allclose(pi, torch.full_like(pi, 1 / 3))  # a random gate is not uniform
    with torch.no_grad():
        unipt.gate.weight.zero_()
        unipt.gate.bias.zero_()
    out = unipt(hs)
    torch.testing.assert_close(out.layer_weights, torch.full((3, 3), 1 / 3, dtype=torch.float64))
    t = [down(h) for down, h in zip(unipt.down, hs, strict=True)]
    zs = [(interaction_weights(t[-1], tl) + torch.eye(7, dtype=torch.float64)) @ tl for tl in t[:-1]]
    torch.testing.assert_close(out.features, unipt.up(t[-1] + unipt.projection(sum(zs) / 3)))


@pytest.mark.parametrize("variant", ["token", "global"])
def test_masked_tokens_never_influence_the_output(variant):
    torch.manual_seed(4)
    unipt = UniPT([12, 12, 16, 8], embed_dim=8, reduction=2, variant=variant).double()
    hs = states()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    noisy = [torch.where(mask[..., None], h, 1e3 * torch.randn_like(h)) for h in hs]
    kw = {"anchor": torch.randn(3, 8, dtype=torch.float64), "position": torch.tensor([6, 2, 4])} if variant == "global" else {}
    a, b = unipt(hs, mask, **kw), unipt(noisy, mask, **kw)
    torch.testing.assert_close(a.layer_weights, b.layer_weights, rtol=1e-12, atol=1e-12)
    if variant == "token":
        torch.testing.assert_close(a.features[mask], b.features[mask], rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(a.features, b.features, rtol=1e-12, atol=1e-12)
    # and without the mask the same noise does change the output (the test can fail)
    assert not torch.allclose(unipt(hs, None, **kw).layer_weights, unipt(noisy, None, **kw).layer_weights)


def test_query_index_equals_the_full_output_at_that_token():
    torch.manual_seed(5)
    unipt = UniPT([12, 12, 16, 8], embed_dim=10, reduction=2).double()
    hs = states()
    index = torch.tensor([0, 4, 6])
    full = unipt(hs).features
    part = unipt(hs, query_index=index)
    torch.testing.assert_close(part.features, full[torch.arange(3), index], rtol=1e-10, atol=1e-10)


def test_bad_arguments_are_one_line_errors():
    for kwargs, words in [
        ({"hidden_dims": [8], "embed_dim": 8}, "at least 2"),
        ({"hidden_dims": [8, 8], "embed_dim": 8, "reduction": 3}, "divisor"),
        ({"hidden_dims": [8, 8], "embed_dim": 8, "variant": "cls"}, "variant"),
    ]:
        with pytest.raises(UniPTError, match=words) as err:
            UniPT(**kwargs)
        assert "\n" not in str(err.value)
    unipt = UniPT([8, 8], 8)
    with pytest.raises(UniPTError, match=r"hidden state 1 has shape \(2, 3, 5\); expected \(B, N, 8\)"):
        unipt([torch.zeros(2, 3, 8), torch.zeros(2, 3, 5)])
    with pytest.raises(UniPTError, match="2 hidden states, got 1"):
        unipt([torch.zeros(2, 3, 8)])


# ---- parameter counts ---------------------------------------------------------------------------------
def token_formula(num_states: int, width: int, embed: int, r: int, classes: int) -> int:
    """Spec formula: (L+1)(DM + 3M) + (M^2 + 3M) + (ME + E) + (M + 1) + head."""
    m = embed // r
    return num_states * (width * m + 3 * m) + (m * m + 3 * m) + (m * embed + embed) + (m + 1) + (embed * classes + classes)


def test_parameter_count_vit_ti_matches_the_spec_number():
    import timm

    clf = UniPTClassifier(timm.create_model("vit_tiny_patch16_224"), num_classes=10, reduction=2)
    trainable = sum(p.numel() for p in clf.parameters() if p.requires_grad)
    assert trainable == 273_515 == token_formula(13, 192, 192, 2, 10)
    assert clf.parameter_report().trainable == 273_515


@pytest.mark.parametrize(("r", "embed"), [(1, 64), (2, 64), (4, 32)])
def test_parameter_count_formula_token_variant(r, embed):
    clf = UniPTClassifier(tiny_vit(), num_classes=7, reduction=r, embed_dim=embed)
    assert clf.parameter_report().trainable == token_formula(5, 64, embed, r, 7)


def test_parameter_count_formula_global_variant():
    # (L+1)(DM + M) + (EM + M) + (ME + E) + (M + 1) + head, E = pooled width, no LayerNorm
    clf = UniPTClassifier(tiny_vit(), num_classes=7, reduction=2, variant="global")
    d = e = 64
    m = e // 2
    assert clf.parameter_report().trainable == 5 * (d * m + m) + (e * m + m) + (m * e + e) + (m + 1) + (e * 7 + 7)


# ---- the backbone stays out of autograd ----------------------------------------------------------------
class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the channels of (B, N, C) tokens (gives the ViT running statistics to watch)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(width)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


def test_no_gradient_reaches_the_backbone_and_nothing_in_it_changes():
    torch.manual_seed(6)
    vit = tiny_vit(drop_path_rate=0.1)
    vit.norm_pre = TokenBatchNorm(64)
    vit.norm_pre.bn.running_mean.normal_()
    clf = UniPTClassifier(vit, num_classes=5)
    before = {k: v.clone() for k, v in clf.base_model.state_dict().items()}
    seen = []
    hooks = [blk.register_forward_hook(lambda m, a, o: seen.append(o.requires_grad)) for blk in vit.blocks]
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-2)
    clf.train()
    assert not vit.training and not vit.norm_pre.bn.training and clf.side_network.training
    for _ in range(2):
        x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 5, (4,))
        loss = nn.functional.cross_entropy(clf(x), y)
        assert loss.grad_fn is not None
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in vit.parameters())
        opt.step()
    for h in hooks:
        h.remove()
    assert seen and not any(seen)
    after = clf.base_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    grads = {n: p.grad for n, p in clf.side_network.named_parameters()}
    assert all(g is not None for g in grads.values())
    # The shared gate's bias adds one constant to every layer logit, which the softmax over layers cancels:
    # its gradient is 0 in exact arithmetic, and float32 leaves rounding only (exactly 0 here, <= 6e-8 of
    # the gate weight's gradient norm over 12 seeds). A bias that did not cancel would get a gradient of
    # the order of the weight's (both sum the same logit gradients), far above 1e-4 of it.
    gate_bias = grads.pop("unipt.gate.bias")
    assert gate_bias.abs().max() <= 1e-4 * grads["unipt.gate.weight"].norm()
    # every other parameter gets a real gradient: each norm >= 1e-3 of the total measured, rounding ~1e-7 of it
    total = torch.cat([g.flatten() for g in grads.values()]).norm()
    weak = {n: float(g.norm() / total) for n, g in grads.items() if g.norm() <= 1e-4 * total}
    assert not weak, weak


def test_cnn_backbone_is_refused_with_one_line():
    import timm

    with pytest.raises(UniPTError, match="'test_resnet'.*token layers") as err:
        UniPTClassifier(timm.create_model("test_resnet"), num_classes=3)
    assert "\n" not in str(err.value)


def test_vit_without_class_token_reads_out_the_mean():
    clf = UniPTClassifier(tiny_vit(class_token=False, global_pool="avg"), num_classes=3)
    assert clf.readout == "mean"
    assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def test_hidden_states_are_the_embedding_and_every_block_output():
    vit = tiny_vit().eval()
    x = torch.rand(2, 3, 32, 32)
    seen = {}
    vit.norm_pre.register_forward_hook(lambda m, a, o: seen.__setitem__("emb", o))
    for i, blk in enumerate(vit.blocks):
        blk.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o))
    with torch.no_grad():
        h = vit_hidden_states(vit, x)
        logits = vit(x)
    assert len(h.states) == 5 and all(s.shape == (2, 65, 64) for s in h.states)
    assert torch.equal(h.states[0], seen["emb"])
    assert all(torch.equal(h.states[i + 1], seen[i]) for i in range(4))
    torch.testing.assert_close(vit.head(h.pooled), logits)
    assert h.position.tolist() == [0, 0]


def test_memory_at_most_035_of_full_finetuning_and_independent_of_backbone_mode():
    import timm.layers

    timm.layers.set_fused_attn(False)
    try:
        x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 5, (16,))
        torch.manual_seed(0)
        full = tiny_vit()
        full_bytes = measure_training_step(full, lambda: nn.functional.cross_entropy(full(x), y)).activation_bytes
        torch.manual_seed(0)
        clf = UniPTClassifier(tiny_vit(), num_classes=5, readout="mean")
        measured = []
        for backbone_mode in (False, True):
            clf.train()
            clf.base_model.train(backbone_mode)
            measured.append(measure_training_step(clf, lambda: nn.functional.cross_entropy(clf(x), y)).activation_bytes)
    finally:
        timm.layers.set_fused_attn(True)
    assert measured[0] == measured[1]
    assert 0 < measured[0] <= 0.35 * full_bytes, (measured, full_bytes)


# ---- open_clip towers ------------------------------------------------------------------------------------
def tiny_clip():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(7)
    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32)
    text = CLIPTextCfg(context_length=12, vocab_size=64, width=32, heads=2, layers=3)
    return CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval().requires_grad_(False)


def test_open_clip_hidden_states_match_the_towers():
    clip = tiny_clip()
    images = torch.rand(2, 3, 32, 32)
    tokens = torch.tensor([[62, 5, 9, 63, 0, 0, 0, 0, 0, 0, 0, 0], [62, 7, 7, 7, 8, 63, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        hi = open_clip_hidden_states(clip, images, "image")
        ht = open_clip_hidden_states(clip, tokens, "text")
        torch.testing.assert_close(hi.pooled, clip.encode_image(images))
        torch.testing.assert_close(ht.pooled, clip.encode_text(tokens))
    assert len(hi.states) == 3 and hi.states[0].shape == (2, 17, 32)
    assert len(ht.states) == 4 and ht.states[0].shape == (2, 12, 32)
    assert ht.position.tolist() == [3, 5]
    assert ht.mask.sum(1).tolist() == [4, 6]


@pytest.mark.parametrize("variant", ["global", "token"])
def test_text_tower_ignores_tokens_after_end_of_text(variant):
    clip = tiny_clip()
    tokens = torch.tensor([[62, 5, 9, 63, 0, 0, 0, 0, 0, 0, 0, 0], [62, 7, 7, 7, 8, 63, 0, 0, 0, 0, 0, 0]])
    tower = UniPTTower(clip, "text", tokens, reduction=1, variant=variant)
    noisy = tokens.clone()
    noisy[0, 4:] = 11  # after the end-of-text token (ids stay below it, so it stays the argmax)
    noisy[1, 6:] = 3
    a, b = tower(clip, tokens), tower(clip, noisy)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    tokens[0, 2] = 10  # a real token does change it
    assert not torch.allclose(tower(clip, tokens), a)


def test_tower_output_starts_near_the_frozen_embedding_and_needs_no_backbone_grad():
    clip = tiny_clip()
    images = torch.rand(3, 3, 32, 32)
    tower = UniPTTower(clip, "image", images, reduction=1)
    with torch.no_grad():
        tower.unipt.up[1].weight.zero_()
        tower.unipt.up[1].bias.zero_()
    torch.testing.assert_close(tower(clip, images), clip.encode_image(images))
    out = tower(clip, images)
    out.sum().backward()
    assert all(p.grad is None for p in clip.parameters())
    # each row of this gradient sums the ReLU outputs over the batch (no cancellation; mean ~0.4-1 measured)
    assert tower.unipt.up[1].weight.grad.abs().mean() > 1e-3


def test_open_clip_resnet_image_tower_is_refused(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=[1, 1, 1, 1], width=8, image_size=32)
    text = CLIPTextCfg(context_length=12, vocab_size=64, width=16, heads=2, layers=1)
    clip = CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()
    with pytest.raises(UniPTError, match="image tower of CLIP") as err:
        UniPTTower(clip, "image", torch.rand(1, 3, 32, 32))
    assert "\n" not in str(err.value)
