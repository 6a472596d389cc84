"""``rewire`` on tiny timm ViT, Swin and ResNet models: spec A5 oracles 1 (against the official coupling and
swap forms), 3, 6, 9, 10, 12 and the one-line errors. Identities in float64 with stated tolerances."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn

import visionkit.methods.re2tal.reversible as reversible
from tests.helpers import error_of
from tests.methods.re2tal.test_reversible import F64, rel_err, saved_bytes, step
from visionkit.methods.re2tal import RewiredStage, RewireError, rewire, rewired_stages, set_mode

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def tiny_vit(depth: int = 3, drop_path: float = 0.0, dtype: torch.dtype = F64) -> nn.Module:
    """timm ``test_vit`` at 16 px, patch 4 (16 tokens + cls), width 32, 2 heads, 3 classes."""
    return timm.create_model("test_vit", img_size=16, patch_size=4, embed_dim=32, depth=depth, num_heads=2,
                             num_classes=3, drop_path_rate=drop_path).to(dtype)


def tiny_swin(drop_path: float = 0.0) -> nn.Module:
    """Two Swin stages (2 blocks each, windows 4, shifted in odd blocks) on a 8x8 then 4x4 map at 16 px."""
    return SwinTransformer(img_size=16, patch_size=2, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                           num_classes=3, drop_path_rate=drop_path).to(F64)


def tiny_resnet(block: type[nn.Module] = BasicBlock, drop_path: float = 0.0) -> nn.Module:
    """ResNet with stages of 2, 3, 1, 1 blocks; ``layer2`` = downsampling block + 2 identity blocks."""
    channels = (8, 8, 8, 8) if block is BasicBlock else (4, 4, 4, 4)
    return ResNet(block=block, layers=(2, 3, 1, 1), channels=channels, stem_width=8, num_classes=3,
                  drop_path_rate=drop_path, zero_init_last=False).to(F64)


def images(n: int = 2, size: int = 16, dtype: torch.dtype = F64) -> Tensor:
    return torch.randn(n, 3, size, size, dtype=dtype)


# ---- oracle 1: the official coupling / swap forms ---------------------------------------------------------------
def coupling_stage(blocks: list[nn.Module], x: Tensor, attn: str) -> Tensor:
    """OpenTAD Re²Swin per block: ``Y1 = X1 + F(X2)``, ``Y2 = X2 + G(Y1)`` from ``(x, x)``; output the mean.
    ``F = attn(norm1)``, ``G = mlp(norm2)`` (eval mode: drop-path and layer scale are identities)."""
    x1 = x2 = x
    for b in blocks:
        x1 = x1 + getattr(b, attn)(b.norm1(x2))
        x2 = x2 + b.mlp(b.norm2(x1))
    return (x1 + x2) / 2


def swap_stage(blocks: list[nn.Module], x: Tensor) -> Tensor:
    """OpenTAD Re²SlowFast: the projection block unchanged, then ``(a, b) -> (b + relu(F'(a)), a)`` from
    ``(u, u)``, ``F'`` = conv-bn-relu-conv-bn; output the mean of the two halves."""
    u = blocks[0](x)
    a = b = u
    for blk in blocks[1:]:
        branch = torch.relu(blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(a))))))
        a, b = b + branch, a
    return (a + b) / 2


def test_vit_swin_and_resnet_stages_follow_the_official_forms() -> None:
    """Oracle 1 on real timm blocks: the rewired stages equal the OpenTAD coupling (ViT tokens, Swin maps with
    shifted windows) and swap (ResNet, after the projection block) forms to 1e-12, in both modes."""
    torch.manual_seed(0)
    vit, swin, resnet = rewire(tiny_vit().eval()), rewire(tiny_swin().eval()), rewire(tiny_resnet().eval())
    tokens = torch.randn(2, 17, 32, dtype=F64)
    maps = torch.randn(2, 8, 8, 16, dtype=F64)
    features = torch.randn(2, 8, 8, 8, dtype=F64)
    cases = [
        (vit.blocks, tokens, coupling_stage([vit.blocks[i] for i in range(3)], tokens, "attn")),
        (swin.layers[0].blocks, maps, coupling_stage([swin.layers[0].blocks[i] for i in range(2)], maps, "_attn")),
        (resnet.layer2, features, swap_stage([resnet.layer2[i] for i in range(3)], features)),
    ]
    for stage, x, expected in cases:
        assert isinstance(stage, RewiredStage)
        for mode in ("reversible", "vanilla"):
            stage.mode = mode
            out = stage(x.clone().requires_grad_(True))
            assert rel_err(out.detach(), expected) <= 1e-12, (stage.stage_name, mode)


# ---- oracle 3: gradients of every parameter ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit", "vit_float32", "swin", "resnet_basic", "resnet_bottleneck"])
def test_every_parameter_gradient_matches_vanilla_with_drop_path(name: str) -> None:
    """Oracle 3 on whole models in train mode with drop-path 0.5 (same seed before each forward): the input
    and every parameter gradient agree with plain autograd, 1e-8 relative in float64, 1e-4 in float32.
    ResNets train their BatchNorms (batch statistics, running statistics updated)."""
    torch.manual_seed(0)
    dtype = torch.float32 if name.endswith("float32") else F64
    model = {
        "vit": lambda: tiny_vit(drop_path=0.5), "vit_float32": lambda: tiny_vit(drop_path=0.5, dtype=dtype),
        "swin": lambda: tiny_swin(drop_path=0.5), "resnet_basic": lambda: tiny_resnet(drop_path=0.5),
        "resnet_bottleneck": lambda: tiny_resnet(Bottleneck, drop_path=0.5),
    }[name]()
    rev = rewire(model).train()
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = images(4, 32 if name.startswith("resnet") else 16, dtype)
    r, v = step(rev, x, seed=5), step(van, x, seed=5)
    tol = 1e-4 if dtype == torch.float32 else 1e-8
    assert rel_err(r.output, v.output) <= tol
    assert rel_err(r.input_grad, v.input_grad) <= tol
    names = [n for n, _ in rev.named_parameters()]
    for n, a, b in zip(names, r.grads, v.grads, strict=True):
        assert rel_err(a, b) <= tol, n


# ---- oracle 6: parameters and keys preserved --------------------------------------------------------------------
@pytest.mark.parametrize("build", [tiny_vit, tiny_swin, tiny_resnet], ids=["vit", "swin", "resnet"])
def test_parameters_and_state_dict_keys_are_preserved(build) -> None:
    """Oracle 6: same parameter objects and count, identical state-dict keys and tensors, and loading the
    original weights into a fresh rewired model reports no missing or unexpected keys."""
    torch.manual_seed(0)
    original = build()
    params = {n: p for n, p in original.named_parameters()}
    state = {k: v.clone() for k, v in original.state_dict().items()}
    rewired = rewire(original)
    assert rewired is original and rewired_stages(rewired)
    assert {n: p for n, p in rewired.named_parameters()} == params  # the same Parameter objects
    assert list(rewired.state_dict()) == list(state)
    assert all(torch.equal(rewired.state_dict()[k], v) for k, v in state.items())
    torch.manual_seed(1)
    fresh = rewire(build())
    result = fresh.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys


# ---- oracle 7 on ViT blocks ----------------------------------------------------------------------------------------
def test_vit_block_stage_saves_two_token_maps_whatever_its_depth() -> None:
    """Oracle 7 on timm ViT blocks (float32 tokens (4, 17, 32), train mode): the reversible stage saves exactly
    2 x numel x 4 bytes at depth 2 and 8; vanilla keeps every block's activations (8 vs 2 blocks: > 3x)."""
    tokens = torch.randn(4, 17, 32)
    reversible, vanilla = {}, {}
    for depth in (2, 8):
        torch.manual_seed(depth)
        stage = rewire(tiny_vit(depth=depth, dtype=torch.float32)).blocks.train()
        reversible[depth] = saved_bytes(stage, tokens)
        stage.mode = "vanilla"
        vanilla[depth] = saved_bytes(stage, tokens)
    assert reversible == {2: 2 * tokens.numel() * 4, 8: 2 * tokens.numel() * 4}, reversible
    assert vanilla[8] / vanilla[2] > 3, vanilla


# ---- oracle 9: BatchNorm statistics ------------------------------------------------------------------------------
def test_batchnorm_statistics_update_once_per_step() -> None:
    """Oracle 9: in train mode every BatchNorm's ``num_batches_tracked`` goes up by exactly 1 per step (the
    recompute does not update), and the running statistics match vanilla's to 1e-12 after two steps."""
    torch.manual_seed(0)
    rev = rewire(tiny_resnet()).train()
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = images(4, 32)
    for _ in range(2):
        step(rev, x)
        step(van, x)
    for (name, a), (_, b) in zip(rev.named_buffers(), van.named_buffers(), strict=True):
        if name.endswith("num_batches_tracked"):
            assert int(a) == 2, name
        else:
            assert rel_err(a, b) <= 1e-12, name


# ---- oracle 10: frozen stem ---------------------------------------------------------------------------------------
def test_blocks_train_behind_a_frozen_patch_embedding() -> None:
    """Oracle 10 on a ViT: patch embedding, class token and position embedding frozen, so the block stage
    input does not require grad; every block parameter still gets vanilla's gradient (1e-10 relative)."""
    torch.manual_seed(0)
    rev = rewire(tiny_vit())
    rev.patch_embed.requires_grad_(False)
    rev.cls_token.requires_grad_(False)
    rev.pos_embed.requires_grad_(False)
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = images()
    r, v = step(rev, x, input_grad=False), step(van, x, input_grad=False)
    trainable = [n for n, p in rev.named_parameters() if p.requires_grad]
    assert any(n.startswith("blocks.") for n in trainable)
    for n, a, b in zip(trainable, r.grads, v.grads, strict=True):
        assert rel_err(a, b) <= 1e-10, n


# ---- oracle 12: autocast -------------------------------------------------------------------------------------------
def autocast_grads(model: nn.Module, x: Tensor) -> Tensor:
    """All parameter gradients of ``sum(y^2)``, the forward under CPU bf16 autocast, backward outside it."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_recompute_runs_under_the_forward_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle 12 (float32 ViT, CPU bf16 autocast, backward called outside autocast): reversible gradients are
    within bf16 tolerance (1e-2) of vanilla autocast gradients and 100x closer than a recompute done in float32
    (the recorded autocast state replaced by 'disabled'; measured 3e-8 vs 2e-3)."""
    torch.manual_seed(0)
    rev = rewire(tiny_vit(dtype=torch.float32))
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = images(4, dtype=torch.float32)
    vanilla = autocast_grads(van, x)
    same = rel_err(autocast_grads(rev, x), vanilla)
    disabled = reversible.AutocastState("cpu", False, torch.bfloat16, False, torch.bfloat16, True)
    monkeypatch.setattr(reversible, "autocast_state", lambda _device_type: disabled)
    float32_recompute = rel_err(autocast_grads(rev, x), vanilla)
    assert same <= 1e-2 and same <= 0.01 * float32_recompute, (same, float32_recompute)


# ---- eval path on a model, errors and per-block access -------------------------------------------------------------
def test_eval_no_grad_model_equals_its_training_forward_without_random_modules() -> None:
    """Oracle 11 on a ViT (drop-path 0): the no-grad eval output equals the train-mode reversible one (1e-12)."""
    torch.manual_seed(0)
    model = rewire(tiny_vit()).train()
    x = images()
    trained = model(x.requires_grad_(True)).detach()
    with torch.no_grad():
        assert rel_err(model.eval()(x), trained) <= 1e-12


def test_a_model_without_residual_stages_is_a_one_line_error() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
    with pytest.raises(RewireError) as exc:
        rewire(plain)
    assert error_of(exc).startswith("Sequential has no residual stage to rewire: expected")
    with pytest.raises(RewireError) as exc:
        rewire(tiny_vit(), mode="stream")
    assert "mode must be 'reversible' or 'vanilla', got 'stream'" in error_of(exc)
    vit = tiny_vit()
    vit.set_grad_checkpointing(True)
    with pytest.raises(RewireError) as exc:
        rewire(vit)
    assert "gradient checkpointing on" in error_of(exc)


def test_a_rewired_stage_refuses_per_block_loops() -> None:
    """Indexing gives the original block; iterating or slicing (timm's per-block paths) raises one line."""
    model = rewire(tiny_vit())
    assert len(model.blocks) == 3 and type(model.blocks[0]).__name__ == "Block"
    with pytest.raises(RewireError) as exc:
        model.forward_intermediates(images())
    assert "'blocks' cannot be" in error_of(exc)
    with pytest.raises(RewireError):
        list(model.blocks)
