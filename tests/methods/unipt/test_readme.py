"""UniPT: the README's defaults and L1 floor match the code, and the global variant's identity term
on a ViT without a class token is the mean over the pooled tokens, not token 0."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from tests.conftest import REPO
from visionkit.backbones import vit_hidden_states
from visionkit.methods.unipt import model as unipt_model
from visionkit.methods.unipt.model import UniPT, UniPTClassifier, interaction_weights
from visionkit.methods.unipt.task import UniPTRetrievalTask, UniPTTask

README = (REPO / "visionkit" / "methods" / "unipt" / "README.md").read_text()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_vit(**kwargs) -> nn.Module:
    """A timm ViT at 32 px with 8 px patches (16 patch tokens), width 32, depth 2, random weights."""
    torch.manual_seed(0)
    args = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 0}
    return VisionTransformer(**{**args, **kwargs}).eval()


# ---- README vs code ---------------------------------------------------------------------------
def test_readme_defaults_table_matches_the_task_defaults() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| variant |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    classification = inspect.signature(UniPTTask.__init__).parameters["variant"].default
    retrieval = inspect.signature(UniPTRetrievalTask.__init__).parameters["variant"].default
    assert cells[1].startswith(f"`{classification}`"), row
    assert cells[2].startswith(f"`{retrieval}`"), row
    assert "the default for retrieval" not in README.split("**Global variant**")[1].split("\n\n")[0]


def test_readme_l1_floor_is_the_code_floor_and_a_floor_not_an_addend() -> None:
    floors = {float(v) for v in re.findall(r"max\([^)]*?,\s*(1e-\d+)\)", README)}
    assert floors == {unipt_model.EPS}
    assert "1e-8" in README  # the VSE∞ fork's own rule (sum + 1e-8) is stated as a difference
    # a row whose positive scores sum to 5e-7 is divided by the floor 1e-6 (weights sum to 0.5);
    # adding 1e-8 to the sum instead would give weights summing to about 0.98
    query = torch.ones(1, 1, 1, dtype=torch.float64)
    keys = torch.tensor([[[2e-7], [3e-7], [-1.0]]], dtype=torch.float64)
    weights = interaction_weights(query, keys)
    torch.testing.assert_close(weights.sum(), torch.tensor(0.5, dtype=torch.float64), rtol=1e-9, atol=0)


# ---- the global variant's identity term ----------------------------------------------------------
def reference_global(unipt: UniPT, hs: list[torch.Tensor], anchor: torch.Tensor, pooled: slice) -> torch.Tensor:
    """The global variant written out with the identity term = the target's mean over ``pooled`` tokens."""
    query = unipt.anchor_down(anchor).unsqueeze(1)
    zs, logits = [], []
    for down, h in zip(unipt.down, hs, strict=True):
        t = down(h)
        s = torch.relu(query @ t.transpose(1, 2))
        s = s / s.sum(-1, keepdim=True).clamp(min=1e-6)
        zs.append(s @ t + t[:, pooled].mean(1, keepdim=True))
        logits.append(unipt.gate(query.squeeze(1) * t.mean(1)))
    pi = torch.cat(logits, 1).softmax(1)
    z = (torch.stack(zs, 1) * pi[:, :, None, None]).sum(1)
    return anchor + unipt.up(z).squeeze(1)


@pytest.mark.parametrize(("kwargs", "skip"), [
    ({"class_token": False, "global_pool": "avg"}, 0),
    ({"class_token": True, "global_pool": "avg"}, 1),
    ({"class_token": False, "reg_tokens": 2, "global_pool": "avg"}, 2),
])
def test_pooled_vit_identity_is_the_mean_over_the_pooled_tokens(kwargs: dict, skip: int) -> None:
    backbone = tiny_vit(**kwargs).double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = vit_hidden_states(backbone, x)
        assert hidden.position is None
        unipt = UniPT([h.shape[-1] for h in hidden.states], hidden.pooled.shape[-1], 2, "global").double()
        out = unipt(hidden.states, anchor=hidden.pooled, pool_mask=hidden.pool_mask).features
        expected = reference_global(unipt, hidden.states, hidden.pooled, slice(skip, None))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert hidden.states[0].shape[1] == 16 + skip


def test_class_token_free_vit_output_ignores_token_order() -> None:
    """Without a class token nothing singles out token 0: the same permutation of the tokens of
    every state (moving token 0 elsewhere) leaves the global output unchanged. With the old
    identity term (token 0) it changed."""
    backbone = tiny_vit(class_token=False, global_pool="avg").double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        hidden = vit_hidden_states(backbone, x)
        unipt = UniPT([h.shape[-1] for h in hidden.states], hidden.pooled.shape[-1], 2, "global").double()
        out = unipt(hidden.states, anchor=hidden.pooled, pool_mask=hidden.pool_mask).features
        perm = torch.roll(torch.arange(hidden.states[0].shape[1]), 5)
        moved = unipt([h[:, perm] for h in hidden.states], anchor=hidden.pooled).features
        token0 = unipt(hidden.states, anchor=hidden.pooled, position=torch.zeros(2, dtype=torch.long)).features
    torch.testing.assert_close(moved, out, rtol=1e-10, atol=1e-10)
    assert (token0 - out).abs().max() > 1e-3  # token 0 as identity is a different (wrong) output


def test_classifier_on_a_class_token_free_vit_uses_the_pooled_tokens() -> None:
    """End to end through UniPTClassifier (global variant): the side network gets the pool mask."""
    backbone = tiny_vit(class_token=False, reg_tokens=1, global_pool="avg")
    clf = UniPTClassifier(backbone, num_classes=3, variant="global").eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    seen = {}
    hook = clf.unipt.register_forward_hook(lambda _m, _a, kw, _o: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        logits = clf(x)
    hook.remove()
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert seen["position"] is None
    assert seen["pool_mask"][0].tolist() == [0.0] + [1.0] * 16  # the register token is not pooled
