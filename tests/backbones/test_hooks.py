"""``ActivationRecorder`` / ``ActivationEditor``: records, edits, handle hygiene, double firing, bad names."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from visionkit.backbones.hooks import (
    ActivationEditor,
    ActivationRecorder,
    HookFiredTwiceError,
    ModuleNameError,
    hooks_registered,
    resolve_modules,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


class Shared(nn.Module):
    """Uses one Linear twice per forward (a shared module)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lin(torch.relu(self.lin(x))))


class Checkpointed(nn.Module):
    """Runs ``inner`` under activation checkpointing, so backward recomputes (re-runs) it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.inner, x, use_reentrant=False).sum()


def test_recorder_records_detached_outputs(vit, images):
    with ActivationRecorder(vit, ["blocks.0", "norm"]) as rec:
        out = vit.forward_features(images)
    assert torch.equal(rec["norm"], out)
    assert rec["blocks.0"].shape == (2, 65, 64) and not rec["blocks.0"].requires_grad
    assert hooks_registered(vit) == 0


def test_recorder_can_keep_graph(vit, images):
    vit.requires_grad_(True)
    with ActivationRecorder(vit, "blocks.3", detach=False) as rec:
        vit(images)
    assert rec["blocks.3"].requires_grad


def test_handles_removed_on_exception(vit, images):
    with pytest.raises(RuntimeError, match="boom"), ActivationRecorder(vit, ["blocks.1"]):
        vit(images)
        raise RuntimeError("boom")
    assert hooks_registered(vit) == 0


def test_module_firing_twice_is_reported_and_cleaned_up():
    net = Shared()
    with pytest.raises(HookFiredTwiceError, match="module 'lin' fired 2 times in one forward"), ActivationRecorder(net, ["lin"]):
        net(torch.randn(3, 4))
    assert hooks_registered(net) == 0


def test_allow_repeat_keeps_every_call():
    net = Shared()
    x = torch.randn(3, 4)
    with ActivationRecorder(net, ["lin"], allow_repeat=True) as rec:
        net(x)
    first, second = rec["lin"]
    assert torch.equal(first, net.lin(x)) and second.shape == (3, 4)


def test_each_root_call_is_a_new_forward(vit, images):
    with ActivationRecorder(vit, ["blocks.2"]) as rec:
        vit(images)
        first = rec["blocks.2"]
        vit(images * 2)
        assert not torch.equal(first, rec["blocks.2"])
        assert rec.calls == {"blocks.2": 1}


def test_checkpoint_recompute_fires_again():
    # a full recompute re-runs the module's forward hooks (pytorch #143573); non-reentrant checkpoint
    # with early stop (the default) aborts the recompute before the module returns, so disable it here
    net = Checkpointed()
    x = torch.randn(2, 4, requires_grad=True)
    with set_checkpoint_early_stop(False), ActivationRecorder(net, ["inner"]):
        loss = net(x)
        with pytest.raises(HookFiredTwiceError, match="activation-checkpoint recompute"):
            loss.backward()
    assert hooks_registered(net) == 0


def test_unknown_module_name_is_named_with_close_matches(vit):
    with pytest.raises(ModuleNameError) as info:
        ActivationRecorder(vit, ["block.1"])
    assert "no module named 'block.1' in VisionTransformer" in str(info.value)
    assert "blocks.1" in str(info.value)
    assert hooks_registered(vit) == 0
    with pytest.raises(ModuleNameError, match="no module named 'zzz'"):
        resolve_modules(vit, ["zzz"])


def test_missing_record_is_a_clear_key_error(vit, images):
    with ActivationRecorder(vit, ["blocks.5"]) as rec:
        pass
    with pytest.raises(KeyError, match="was not run"):
        rec["blocks.5"]


def test_editor_changes_output_only_inside(vit, images):
    before = vit(images)
    with ActivationEditor(vit, {"blocks.5": lambda y: torch.zeros_like(y)}):
        edited = vit(images)
    expected = vit.forward_head(vit.norm(torch.zeros(2, 65, 64)))
    assert torch.allclose(edited, expected)
    assert torch.equal(vit(images), before)
    assert hooks_registered(vit) == 0


def test_editor_identity_is_exact(resnet):
    x = torch.randn(2, 3, 32, 32)
    before = resnet(x)
    with ActivationEditor(resnet, {"layer2": lambda y: y, "act1": lambda y: y * 1.0}):
        assert torch.equal(resnet(x), before)


def test_recorder_cannot_be_entered_twice(vit):
    rec = ActivationRecorder(vit, ["blocks.0"])
    with rec, pytest.raises(RuntimeError, match="already active"):
        rec.__enter__()
    assert hooks_registered(vit) == 0
