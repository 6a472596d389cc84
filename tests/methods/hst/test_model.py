"""HST on tiny random ViTs: the spec's HST oracles 1-8 (section 5) and the one-line errors.

The model is checked against the official forward written out literally (``official_forward``:
ViT blocks called one by one with a fresh meta token, features interpolated *then* bridged, the
cross-attention one head at a time), in float64, for every bridge order.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.helpers import error_of, make_vit
from visionkit.methods.hst import HST, HSTError, bridge_tokens, side_widths

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


# ---- helpers (imported by the other HST test modules) ---------------------------------------------------
def tiny_vit(**kwargs) -> nn.Module:
    """A timm ViT at 32 px with 4 px patches (8x8 grid + class token), width 64, depth 4, 2 heads."""
    from timm.models.vision_transformer import VisionTransformer

    args = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 2, "num_classes": 5}
    return VisionTransformer(**{**args, **kwargs})


def randomise_statistics(model: HST, seed: int = 0) -> None:
    """Give every BatchNorm random running statistics (so eval mode is not an identity map)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.side_network.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def literal_attention(attn: nn.Module, x: Tensor, kv: Tensor) -> Tensor:
    """Multi-head cross-attention, one head at a time: softmax(q_h k_h^T / sqrt(d)) v_h, concatenated, proj."""
    d = x.shape[-1] // attn.num_heads
    q, k, v = attn.q(x), attn.k(kv), attn.v(kv)
    heads = []
    for h in range(attn.num_heads):
        cols = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(d), dim=-1)
        heads.append(weights @ v[..., cols])
    return attn.proj(torch.cat(heads, dim=-1))


def official_forward(model: HST, x: Tensor, pyramid: bool = False) -> Tensor | list[Tensor]:
    """``ViT_HSN.forward_features`` + head, literally: ViT blocks called one by one with a fresh meta
    token in front, every layer's features interpolated to the stage map *then* bridged. For a detached
    model: the plain ViT, and each block's class-token output in the meta slot."""
    vit, side = model.base_model, model.side_network
    b, p = x.shape[0], vit.patch_embed.patch_size
    gh, gw = x.shape[-2] // p[0], x.shape[-1] // p[1]
    meta = 0 if model.detached else 1
    skip = meta + vit.num_prefix_tokens
    t = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    metas, feats = [], []
    for layer, blk in enumerate(vit.blocks):
        z = blk(t if model.detached else torch.cat([side.meta_tokens[layer].expand(b, -1, -1), t], dim=1))
        metas.append(z[:, :1])  # the meta token's output, or (detached) the class token's
        feats.append(z[:, skip:].transpose(1, 2).reshape(b, -1, gh, gw))
        t = z[:, meta:]
    xm, maps = x, []
    for s, stage in enumerate(side.stages):
        if s == 0:
            conv = stage.embed.conv
            y = conv[3](torch.relu(conv[1](conv[0](x))))
        else:
            y = stage.embed.proj(xm)
        hs, ws = y.shape[-2:]
        xt = stage.embed.norm(y.flatten(2).transpose(1, 2))
        for j, layer in enumerate(stage.layers):
            v = stage.bridge(F.interpolate(feats[layer], size=(hs, ws), mode="bilinear", align_corners=False)
                             .flatten(2).transpose(1, 2))
            kv = torch.cat([stage.meta_norms[j](stage.bridge(metas[layer])), v.mean(dim=1, keepdim=True)], dim=1)
            blk = stage.blocks[j]
            xt = xt + literal_attention(blk.attn, blk.norm1(xt), kv)
            xt = xt + v
            xt = xt + blk.mlp[3](F.gelu(blk.mlp[0](blk.norm2(xt))))
        xt = stage.norm(xt)
        xm = xt.reshape(b, hs, ws, -1).permute(0, 3, 1, 2)
        maps.append(xm)
    if pyramid:
        return maps
    return side.head(side.head_norm(xt.mean(dim=1)))


def parameter_formula(vit_dim: int, depth: int, widths: list[int], depths: list[int], classes: int,
                      meta: int = 1, vit_norms: bool = True, in_chans: int = 3) -> int:
    """Spec §2.A count: stem, 3 stride-2 convs, 12C^2+13C per side block, stage LNs, (D+1)C bridges,
    per-layer meta LNs, meta tokens, ViT block LNs (4D per block), head (C_4+1)K."""
    c = widths
    n = in_chans * 9 * c[0] + 2 * c[0] + (4 * c[0] ** 2 + c[0]) + 2 * c[0]
    n += sum(9 * c[s - 1] * c[s] + c[s] + 2 * c[s] for s in range(1, 4))
    n += sum(d * (12 * w**2 + 13 * w) for d, w in zip(depths, c, strict=True))
    n += sum(2 * w for w in c) + sum((vit_dim + 1) * w for w in c)
    n += sum(d * 2 * w for d, w in zip(depths, c, strict=True))
    n += depth * meta * vit_dim + (4 * vit_dim * depth if vit_norms else 0)
    return n + (c[3] + 1) * classes


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def images(batch: int = 3, size: int = 32, seed: int = 0) -> Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- the official forward, literally (covers oracle 5's bookkeeping and oracle 6 end to end) ------------
@pytest.mark.parametrize("order", ["auto", "resize_first", "bridge_first"])
@pytest.mark.parametrize(("size", "patch"), [(32, 4), (64, 16)])
def test_matches_the_official_forward_written_out(order, size, patch):
    """32 px / patch 4: 8x8 grid -> stages 8, 4, 2, 1 (same, down x2, x4, x8); 64 px / patch 16: 4x4 grid ->
    16, 8, 4, 2 (up x4, x2, same, down x2), the ratios of 224 px / patch 16."""
    torch.manual_seed(1)
    model = HST(make_vit(img_size=size, patch_size=patch), num_classes=7, bridge_order=order).double().eval()
    randomise_statistics(model)
    x = images(size=size).double()
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(model, x), rtol=1e-10, atol=1e-10)
        for got, want in zip(model.pyramid(x), official_forward(model, x, pyramid=True), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [32, 64])
def test_detached_variant_matches_its_forward_written_out(size):
    torch.manual_seed(12)
    model = HST(make_vit(img_size=size, patch_size=16 if size == 64 else 4), num_classes=4, detached=True)
    model = model.double().eval()
    randomise_statistics(model)
    x = images(size=size).double()
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(model, x), rtol=1e-10, atol=1e-10)


def test_gradient_checkpointing_gives_the_same_logits_and_gradients():
    x, y = images(4), torch.tensor([0, 1, 2, 3])
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(13)
        model = HST(make_vit(), num_classes=5).eval()
        model.base_model.set_grad_checkpointing(checkpointing)
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        results.append((logits.detach(), model.meta_tokens.grad.clone()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)


def test_register_and_distillation_tokens_are_skipped():
    """Patch features start after the meta token and every prefix token (class + registers)."""
    torch.manual_seed(2)
    model = HST(tiny_vit(reg_tokens=2), num_classes=3).double().eval()
    x = images().double()
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(model, x), rtol=1e-10, atol=1e-10)
        assert model.extract(x).patches[0].shape == (3, 64, 64)


# ---- oracle 1: shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("vit_kwargs", "size", "sides"), [
    ({}, 32, (8, 4, 2, 1)),
    ({}, 64, (16, 8, 4, 2)),  # test_vit takes any size (dynamic_img_size)
    ({"img_size": 224, "patch_size": 16, "embed_dim": 32}, 224, (56, 28, 14, 7)),
])
def test_pyramid_shapes_and_logits(vit_kwargs, size, sides):
    model = HST(make_vit(**vit_kwargs), num_classes=4).eval()
    x = images(2, size)
    with torch.no_grad():
        maps = model.pyramid(x)
        logits = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, c, s, s) for c, s in zip((32, 48, 64, 72), sides, strict=True)]
    assert [size // m.shape[-1] for m in maps] == list(model.strides) == [4, 8, 16, 32]
    assert logits.shape == (2, 4)


def test_rectangular_input_and_pooled_features_without_head():
    model = HST(make_vit(), num_classes=0).eval()
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        maps = model.pyramid(x)
        pooled = model(x)
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 8), (8, 4), (4, 2), (2, 1)]
    torch.testing.assert_close(pooled, maps[-1].mean(dim=(2, 3)))
    assert model.side_network.head_norm is None


# ---- oracle 2: parameter count -----------------------------------------------------------------------------
def test_parameter_count_vit_b16_matches_the_spec():
    """764,840 + 73 K trainable (K = 100 -> 772,140); 727,976 + 73 K without the ViT LayerNorms. Counted
    without a forward pass (building ViT-B/16 with random weights takes ~2 s here)."""
    import timm

    backbone = timm.create_model("vit_base_patch16_224", pretrained=False)
    for norms, base in ((True, 764_840), (False, 727_976)):
        model = HST(backbone, num_classes=100, train_vit_norms=norms)
        assert trainable(model) == base + 73 * 100 == parameter_formula(768, 12, [32, 48, 64, 72], [3] * 4, 100,
                                                                         vit_norms=norms)
        assert model.parameter_report().trainable == trainable(model)
    assert trainable(model) + 36_864 == 772_140


def test_trainable_parameters_are_the_official_set():
    model = HST(make_vit(), num_classes=5)
    vit_trainable = sorted(n for n, p in model.base_model.named_parameters() if p.requires_grad)
    assert vit_trainable == sorted(f"blocks.{i}.{n}.{w}" for i in range(6) for n in ("norm1", "norm2")
                                   for w in ("weight", "bias"))
    assert all(p.requires_grad for p in model.side_network.parameters())
    assert model.meta_tokens.shape == (6, 1, 64)
    assert model.stage_layers == [[0], [1, 2], [3], [4, 5]]  # (s+1) L // 4 - 1 = 0, 2, 3, 5
    assert trainable(model) == parameter_formula(64, 6, [32, 48, 64, 72], [1, 2, 1, 2], 5)


@pytest.mark.parametrize(("scale", "widths"), [(1.0, [32, 48, 64, 72]), (0.5, [16, 24, 32, 36]),
                                                (2.0, [64, 96, 128, 144]), (0.25, [8, 12, 16, 24])])
def test_scale_knob_keeps_widths_divisible_by_heads(scale, widths):
    assert side_widths(scale) == widths
    model = HST(tiny_vit(), num_classes=3, scale=scale)
    assert model.widths == widths
    assert trainable(model) == parameter_formula(64, 4, widths, [1] * 4, 3)
    with torch.no_grad():
        assert model.eval()(images(2)).shape == (2, 3)


def test_meta_tokens_have_the_official_xavier_bound():
    model = HST(make_vit(embed_dim=192, num_heads=3), num_classes=2)
    bound = math.sqrt(3 / 192)
    tokens = model.meta_tokens
    assert tokens.abs().max() <= bound and tokens.abs().max() > 0.9 * bound
    assert abs(float(tokens.detach().std()) - bound / math.sqrt(3)) < 0.1 * bound  # uniform(-a, a) has std a / sqrt(3)


# ---- oracle 3: stage mapping -------------------------------------------------------------------------------
def test_stage_mapping_depth_8_every_block_feeds_one_side_block():
    torch.manual_seed(3)
    model = HST(tiny_vit(depth=8), num_classes=5, block_indices=[1, 3, 5, 7]).eval()
    assert model.stage_layers == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [len(stage.blocks) for stage in model.side_network.stages] == [2, 2, 2, 2]
    x = images(4)
    with torch.no_grad():
        clean = model(x)
    for i, blk in enumerate(model.base_model.blocks):
        handle = blk.register_forward_hook(lambda m, a, out: out + 0.5 * torch.randn_like(out))
        with torch.no_grad():
            noisy = model(x)
        handle.remove()
        assert (noisy - clean).abs().max() > 1e-3, f"perturbing block {i} left the logits unchanged"
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    per_layer = model.meta_tokens.grad.flatten(1).norm(dim=1)
    assert torch.isfinite(per_layer).all()
    assert (per_layer > 1e-3 * per_layer.max()).all(), per_layer


# ---- oracle 4: gradient path ------------------------------------------------------------------------------
def test_gradients_reach_the_meta_tokens_through_the_frozen_vit():
    """float64, so that a structural zero (~1e-20 of the total norm, measured) and a small real gradient
    (>= 8e-8 of it over 6 seeds: at init the side attention is nearly uniform over its 2 keys, so LN1/q
    gradients are second-order small) are 5 orders of magnitude apart on each side of 1e-12."""
    torch.manual_seed(4)
    model = HST(make_vit(), num_classes=5).double().eval()  # eval: the BatchNorm head uses running statistics
    seen = []
    for blk in model.base_model.blocks:
        blk.register_forward_hook(lambda m, a, out: seen.append(out.requires_grad))
    F.cross_entropy(model(images(4).double()), torch.tensor([0, 1, 2, 3])).backward()
    assert seen and all(seen)
    frozen = {n: p for n, p in model.base_model.named_parameters() if not p.requires_grad}
    assert frozen and all(p.grad is None for p in frozen.values())
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    total = torch.cat([g.flatten() for g in grads.values()]).norm()
    # a key bias shifts every key's score by the same q.b_k, which the softmax cancels: zero by construction
    key_bias = {n: float(grads.pop(n).norm() / total) for n in list(grads) if n.endswith("attn.k.bias")}
    assert len(key_bias) == 6 and max(key_bias.values()) <= 1e-12, key_bias
    weak = {n: float(g.norm() / total) for n, g in grads.items() if g.norm() <= 1e-12 * total}
    assert not weak, weak
    assert {"side_network.meta_tokens", "base_model.blocks.0.norm1.weight", "side_network.stages.0.bridge.weight",
            "side_network.stages.0.meta_norms.0.weight", "side_network.head.weight"} <= set(grads)


def test_frozen_vit_stays_in_eval_mode_with_drop_path():
    """Official code trains the frozen ViT with drop-path on; visionkit keeps frozen parts in eval (no
    stochastic depth in the ViT), so two training forwards agree."""
    torch.manual_seed(5)
    model = HST(make_vit(drop_path_rate=0.5, proj_drop_rate=0.3, pos_drop_rate=0.3), num_classes=5).train()
    assert model.side_network.training and model.base_model.blocks[0].norm1.training
    assert not model.base_model.blocks[0].drop_path1.training and not model.base_model.blocks[0].attn.training
    x = images(4)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


# ---- oracle 5: meta-token bookkeeping ---------------------------------------------------------------------
def test_meta_token_enters_every_block_and_is_dropped_after_it():
    torch.manual_seed(6)
    model = HST(make_vit(), num_classes=5).eval()
    inputs, outputs = [], []

    def record(module: nn.Module, args: tuple, out: Tensor) -> None:
        inputs.append(args[0])
        outputs.append(out)

    for blk in model.base_model.blocks:
        blk.register_forward_hook(record)
    x = images(2)
    with torch.no_grad():
        feats = model.extract(x)
    n = 1 + 64  # class token + 8x8 patches between blocks
    assert [t.shape[1] for t in inputs] == [n + 1] * 6 and [t.shape[1] for t in outputs] == [n + 1] * 6
    for i in range(6):
        torch.testing.assert_close(inputs[i][:, 0], model.meta_tokens[i, 0].expand(2, -1), rtol=0, atol=0)
        assert torch.equal(feats.metas[i], outputs[i][:, :1])
        assert torch.equal(feats.patches[i], outputs[i][:, 2:])  # neither the meta nor the class token
        if i:
            assert torch.equal(inputs[i][:, 1:], outputs[i - 1][:, 1:])  # the carried sequence has length N
    assert feats.grid == (8, 8) and feats.patches[0].shape == (2, 64, 64)


# ---- oracle 6: bridge commutation --------------------------------------------------------------------------
@pytest.mark.parametrize(("grid", "sizes"), [(14, (56, 28, 14, 7)), (8, (8, 4, 2, 1)), (4, (16, 8, 4, 2))])
def test_bridge_commutes_with_bilinear_resizing(grid, sizes):
    gen = torch.Generator().manual_seed(7)
    bridge = nn.Linear(40, 24).double()
    with torch.no_grad():
        bridge.bias.normal_(generator=gen)  # a non-zero bias: the weights summing to 1 matter
    tokens = torch.randn(2, grid * grid, 40, generator=gen, dtype=torch.float64)
    for size in sizes:
        a = bridge_tokens(tokens, (grid, grid), (size, size), bridge, bridge_first=False)
        b = bridge_tokens(tokens, (grid, grid), (size, size), bridge, bridge_first=True)
        assert a.shape == (2, size * size, 24)
        assert (a - b).abs().max() <= 1e-12  # measured <= 1e-14; a missing bias term would be O(1)


def test_bridge_orders_give_the_same_logits_in_float32():
    torch.manual_seed(8)
    x = images(3, 64)
    logits = []
    for order in ("resize_first", "bridge_first", "auto"):
        torch.manual_seed(8)
        model = HST(make_vit(img_size=64, patch_size=16), num_classes=5, bridge_order=order).eval()
        with torch.no_grad():
            logits.append(model(x))
    for other in logits[1:]:
        torch.testing.assert_close(other, logits[0], rtol=1e-5, atol=1e-5)


# ---- oracle 7: bridge ablation ------------------------------------------------------------------------------
def test_zero_bridges_make_the_logits_independent_of_the_vit():
    torch.manual_seed(9)
    model = HST(make_vit(), num_classes=5).eval()
    randomise_statistics(model)
    x = images(3)

    def randomise_vit(seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.base_model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)

    with torch.no_grad():
        before = model(x)
        randomise_vit(1)
        assert (model(x) - before).abs().max() > 1e-3  # control: normally the ViT matters
        for stage in model.side_network.stages:
            stage.bridge.weight.zero_()
            stage.bridge.bias.zero_()
        ablated = model(x)
        randomise_vit(2)
        assert torch.equal(model(x), ablated)  # the ViT only enters through exact zeros


# ---- oracle 8: BatchNorm head -------------------------------------------------------------------------------
def test_batchnorm_head_affine_free_batch_one_and_running_statistics():
    torch.manual_seed(10)
    model = HST(make_vit(), num_classes=5)
    bn = model.side_network.head_norm
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.weight is None and bn.eps == 1e-6
    model.train()
    with pytest.raises(HSTError, match="batch size 1 in training") as err:
        model(images(1))
    error_of(err)
    before = bn.running_mean.clone()
    model(images(4))
    assert not torch.equal(bn.running_mean, before)  # training updates the running statistics
    model.eval()
    x = images(4, seed=3)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[:1])  # batch size 1 is fine in eval
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a[:1], rtol=1e-5, atol=1e-5)  # running stats: no batch dependence


# ---- detached variant ----------------------------------------------------------------------------------------
def test_detached_variant_keeps_the_vit_out_of_autograd():
    torch.manual_seed(11)
    vit = make_vit()
    official = trainable(HST(make_vit(), num_classes=5))
    model = HST(vit, num_classes=5, detached=True).eval()
    assert model.meta_tokens is None and model.detached
    assert trainable(model) == official - 6 * 64 - 6 * 4 * 64  # no meta tokens, frozen ViT LayerNorms
    seen = []
    for blk in vit.blocks:
        blk.register_forward_hook(lambda m, a, out: seen.append((out.requires_grad, out.shape[1])))
    x = images(3)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    assert seen == [(False, 65)] * 6  # no meta token in the sequence, nothing recorded
    assert all(p.grad is None for p in vit.parameters())
    assert all(p.grad is not None for p in model.side_network.parameters())
    with torch.no_grad():
        feats = model.extract(x)
        tokens = vit.forward_features(x)
    # the meta slot holds each block's class-token output, and the ViT runs exactly as without HST
    out = vit.norm(torch.cat([feats.metas[-1], feats.patches[-1]], dim=1))
    torch.testing.assert_close(out, tokens, rtol=1e-6, atol=1e-6)


def test_detached_without_class_token_uses_the_mean_patch_token():
    model = HST(tiny_vit(class_token=False, global_pool="avg"), num_classes=3, detached=True).eval()
    with torch.no_grad():
        feats = model.extract(images(2))
        assert model(images(2)).shape == (2, 3)
    torch.testing.assert_close(feats.metas[0], feats.patches[0].mean(1, keepdim=True))


# ---- one-line errors --------------------------------------------------------------------------------------------
def test_input_size_the_stages_cannot_divide_is_refused():
    model = HST(make_vit(), num_classes=5).eval()
    for size, words in [(40, "40x40 is not divisible by 32"), (48, "48x48 is not divisible by 32")]:
        with pytest.raises(HSTError, match=words) as err:
            model(images(2, size))
        assert "strides 4, 8, 16, 32" in error_of(err)
    for bad in (torch.rand(2, 3, 32), torch.rand(2, 1, 32, 32)):
        with pytest.raises(HSTError, match=r"expects images \(B, 3, H, W\)") as err:
            model(bad)
        error_of(err)
    fixed = HST(tiny_vit(), num_classes=5).eval()  # a ViT built for 32 px only
    with pytest.raises(HSTError, match="64x64, but the ViT takes 32x32 only") as err:
        fixed(images(2, 64))
    error_of(err)


def test_patch_size_joins_the_divisibility_rule():
    model = HST(make_vit(img_size=224, patch_size=14, embed_dim=32), num_classes=2)
    with pytest.raises(HSTError, match="224x224|divisible by 224") as err:
        model.check_input(torch.rand(1, 3, 64, 64))
    assert "patch size" in error_of(err)
    model.check_input(torch.rand(1, 3, 224, 224))


def test_cnn_backbone_is_refused_with_one_line():
    import timm

    with pytest.raises(HSTError, match="'test_resnet' has no token blocks") as err:
        HST(timm.create_model("test_resnet"), num_classes=3)
    error_of(err)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"block_indices": [0, 1, 2]}, "block_indices must be 4 increasing"),
    ({"block_indices": [0, 2, 1, 5]}, "block_indices must be 4 increasing"),
    ({"block_indices": [0, 1, 2, 4]}, "ending at the last block 5"),
    ({"detached": True, "train_vit_norms": True}, "LayerNorms cannot train"),
    ({"scale": 0}, "scale must be > 0"),
    ({"widths": (32, 50, 64, 72)}, "side width 50 is not a positive multiple of its 4 heads"),
    ({"bridge_order": "first"}, "bridge_order must be"),
])
def test_bad_arguments_are_one_line_errors(kwargs, words):
    with pytest.raises(HSTError, match=words) as err:
        HST(make_vit(), num_classes=5, **kwargs)
    error_of(err)


def test_vit_shallower_than_four_blocks_is_refused():
    with pytest.raises(HSTError, match="at least 4 blocks") as err:
        HST(tiny_vit(depth=3), num_classes=2)
    error_of(err)
