"""ToCo network on a tiny random ViT: spec §5 oracles 1 (shapes, aux tokens = un-normed block L-3,
final tokens post-norm) and 2 (GMP then linear, not the CAM's spatial max), parameter groups, and
the one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.helpers import error_of, make_resnet
from tests.methods.toco import tiny_toco, tiny_vit
from visionkit.methods.toco import ToCo, ToCoError

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def manual_blocks(vit, x: Tensor) -> list[Tensor]:
    """Every block's raw output ``(B, P + N, D)``, the blocks called one by one."""
    t = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
    outs = []
    for blk in vit.blocks:
        t = blk(t)
        outs.append(t)
    return outs


def to_map(tokens: Tensor, prefix: int, grid: tuple[int, int]) -> Tensor:
    return tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], *grid)


def test_shapes_on_a_non_square_input():
    model = tiny_toco(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    assert out.logits.shape == out.aux_logits.shape == (2, 3)
    assert out.seg.shape == (2, 4, 8, 12)
    assert out.features.shape == out.aux_features.shape == (2, 32, 8, 12)
    assert out.class_token.shape == (2, 32)
    cam, cam_aux = model.cams(x)
    assert cam.shape == cam_aux.shape == (2, 3, 8, 12)


@pytest.mark.parametrize("aux_layer, block", [(-3, 1), (2, 2)])
def test_aux_tokens_are_the_unnormed_block_output_and_final_tokens_are_normed(aux_layer, block):
    model = tiny_toco(aux_layer=aux_layer).double().eval()
    vit = model.backbone
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        blocks = manual_blocks(vit, x)
        timm_final, (timm_aux,) = vit.forward_intermediates(x, indices=[block], norm=False, output_fmt="NCHW")
    raw = to_map(blocks[block], 1, (8, 8))
    torch.testing.assert_close(out.aux_features, raw, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(timm_aux, raw, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out.aux_features, to_map(vit.norm(blocks[block]), 1, (8, 8)), atol=1e-3)
    final = vit.norm(blocks[-1])
    torch.testing.assert_close(out.features, to_map(final, 1, (8, 8)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(timm_final, final, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.class_token, final[:, 0], rtol=1e-10, atol=1e-10)


def test_logits_are_the_linear_map_of_the_max_pooled_features():
    model = tiny_toco().double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        cam, cam_aux = model.cams(x)
    w, w_aux = model.classifier.weight.flatten(1), model.aux_classifier.weight.flatten(1)
    torch.testing.assert_close(out.logits, out.features.amax(dim=(2, 3)) @ w.T, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        out.aux_logits, out.aux_features.amax(dim=(2, 3)) @ w_aux.T, rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(cam, torch.einsum("bdhw,cd->bchw", out.features, w), rtol=1e-10, atol=1e-10)
    assert (out.logits - cam.amax(dim=(2, 3))).abs().max() > 1e-3  # GMP then linear != max of the CAM


def test_gmp_differs_from_the_cam_max_in_a_hand_case(monkeypatch):
    """Tokens (1, 0) and (0, 1), weights (1, 1): GMP gives (1, 1) -> logit 2; the CAM is 1 everywhere."""
    model = tiny_toco(num_classes=1).double().eval()
    feats = torch.zeros(1, 32, 1, 2, dtype=torch.float64)
    feats[0, 0, 0, 0], feats[0, 1, 0, 1] = 1.0, 1.0
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[0, :2] = 1.0
    monkeypatch.setattr(model, "encode", lambda x: (feats, feats, feats[:, :, 0, 0]))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 4, 8, dtype=torch.float64))
        cam, _ = model.cams(torch.zeros(1, 3, 4, 8, dtype=torch.float64))
    assert out.logits.item() == pytest.approx(2.0)
    assert cam.amax().item() == pytest.approx(1.0)


def test_param_groups_hold_every_trainable_parameter_once_and_not_the_teacher():
    model = tiny_toco()
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    teacher = {id(p) for p in model.ctc.teacher.parameters()}
    assert not teacher & set(ids)
    assert not model.backbone.pos_embed.requires_grad  # frozen as in the official ViT
    assert id(model.classifier.weight) in {id(p) for p in groups["heads"]}
    assert all(
        "norm" in n
        for n, p in model.backbone.named_parameters()
        if id(p) in {id(q) for q in groups["backbone_norm"]}
    )
    assert tiny_toco(freeze_pos_embed=False).backbone.pos_embed.requires_grad


def test_class_tokens_match_the_forward_and_take_leading_dims():
    model = tiny_toco().double().eval()
    x = torch.randn(2, 3, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        tokens = model.class_tokens(x)
        ref = model(x[1]).class_token
    assert tokens.shape == (2, 3, 32)
    torch.testing.assert_close(tokens[1], ref, rtol=1e-10, atol=1e-10)


def test_errors_name_the_bad_input():
    with pytest.raises(ToCoError) as err:
        ToCo(make_resnet(), 3)
    assert "lacks patch_embed" in error_of(err) and "test_resnet" in error_of(err)
    with pytest.raises(ToCoError) as err:
        ToCo(tiny_vit(dynamic_img_size=False), 3)
    assert "dynamic_img_size=True" in error_of(err)
    for bad in (4, -5):
        with pytest.raises(ToCoError) as err:
            tiny_toco(aux_layer=bad)
        assert f"aux_layer={bad}" in error_of(err) and "-4..3" in error_of(err)
    with pytest.raises(ToCoError) as err:
        tiny_toco()(torch.randn(1, 3, 30, 32))
    assert "30x32" in error_of(err) and "4x4" in error_of(err)
    with pytest.raises(ToCoError) as err:
        ToCo(tiny_vit(global_pool=""), 3)
    assert "global_pool" in error_of(err)
    with pytest.raises(ToCoError):
        tiny_toco(num_classes=0)


def test_cams_under_bf16_autocast_run_and_the_aux_path_is_unnormed():
    """The aux map is pre-LayerNorm: its per-token std differs from 1 while the final tokens' is ~1."""
    model = tiny_toco().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    final_std = out.features.std(dim=1)
    assert torch.allclose(final_std, torch.ones_like(final_std), atol=0.05)
    assert (out.aux_features.std(dim=1) - 1).abs().mean() > 0.1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cam, _ = model.cams(x)
    assert cam.dtype == torch.bfloat16 and torch.isfinite(cam).all()
