"""Class token contrast: spec §5 oracles 7 (loss bounds, the hand case, the official per-image loop,
gradients) and 8 (EMA teacher), plus the projection head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from tests.helpers import error_of
from tests.methods.toco import tiny_toco
from visionkit.methods.toco import CTCHead, CTCHeads, ToCoError, ctc_loss

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def literal_ctc(teacher: Tensor, student: Tensor, flags: Tensor, tau: float) -> Tensor:
    """The official loop: exp of raw dot products, the extra log(1 + N) once per teacher view."""
    e = torch.exp(teacher @ student.transpose(1, 2) / tau)
    total = 0.0
    for i in range(teacher.shape[0]):
        neg = e[i][:, flags[i] == 0].sum(dim=1)
        positives = flags[i].nonzero().flatten()
        loss = 0.0
        for j in positives:
            loss = loss - torch.log(e[i, :, j] / (e[i, :, j] + neg + 1e-4))
        loss = loss + torch.log(1 + neg + 1e-4)
        total = total + loss.sum() / 2 / (len(positives) + 1e-4)
    return total / teacher.shape[0]


def test_head_outputs_cosines_with_a_frozen_unit_magnitude():
    head = CTCHead(12, out_dim=20, hidden_dim=16, bottleneck_dim=6)
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad and (g == 1).all()
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(20))
    out = head(torch.randn(5, 12) * 10)
    assert out.shape == (5, 20) and out.abs().max() <= 1 + 1e-6
    names = {n for n, p in head.named_parameters() if p.requires_grad}
    assert "last_layer.parametrizations.weight.original1" in names and not any(
        "original0" in n for n in names
    )


def test_ema_update_is_exact_and_without_grad():
    heads = CTCHeads(8, out_dim=10, hidden_dim=12, bottleneck_dim=4).double()
    for t, s in zip(heads.teacher.parameters(), heads.student.parameters(), strict=True):
        assert torch.equal(t, s) and not t.requires_grad
    with torch.no_grad():
        for p in heads.student.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    before = [t.clone() for t in heads.teacher.parameters()]
    student = [s.clone() for s in heads.student.parameters()]
    with torch.enable_grad():
        heads.update_teacher()
    for t, t0, s in zip(heads.teacher.parameters(), before, student, strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s, rtol=1e-14, atol=1e-14)
        assert t.grad_fn is None and not t.requires_grad
    assert any(not torch.equal(t, s) for t, s in zip(heads.teacher.parameters(), student, strict=True))


def test_forward_updates_the_teacher_before_using_it_in_training_mode_only():
    heads = CTCHeads(8, out_dim=10, hidden_dim=12, bottleneck_dim=4).double()
    with torch.no_grad():
        heads.student.mlp[0].weight.add_(1.0)
    t0 = heads.teacher.mlp[0].weight.clone()
    g, loc = torch.randn(3, 2, 8, dtype=torch.float64), torch.randn(3, 4, 8, dtype=torch.float64)
    heads.eval()
    teacher_eval, _ = heads(g, loc)
    assert torch.equal(heads.teacher.mlp[0].weight, t0)  # no update outside training
    heads.train()
    teacher, student = heads(g, loc)
    assert teacher.shape == (3, 2, 10) and student.shape == (3, 6, 10) and not teacher.requires_grad
    torch.testing.assert_close(heads.teacher.mlp[0].weight, 0.9 * t0 + 0.1 * heads.student.mlp[0].weight)
    torch.testing.assert_close(teacher, heads.teacher(g), rtol=1e-12, atol=1e-12)  # the updated teacher
    assert (teacher - teacher_eval).abs().max() > 1e-6


def test_loss_matches_the_official_loop():
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 2, 16, generator=gen, dtype=torch.float64)
    student = torch.randn(3, 10, 16, generator=gen, dtype=torch.float64)
    flags = torch.ones(3, 10, dtype=torch.long)
    flags[0, 3:6] = 0
    flags[1, 2:] = 0
    for tau in (0.5, 1.0):
        expected = literal_ctc(teacher, student, flags, tau)
        torch.testing.assert_close(ctc_loss(teacher, student, flags, tau), expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            ctc_loss(teacher, student, flags.bool(), tau), expected, rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("k", [0, 3, 8])
def test_hand_case_identical_outputs_with_k_negatives(k):
    a, tau = 0.6, 0.5
    u = torch.zeros(16, dtype=torch.float64)
    u[0] = math.sqrt(a)  # u . u = a
    teacher, student = u.expand(2, 2, 16), u.expand(2, 10, 16)
    flags = torch.ones(2, 10, dtype=torch.bool)
    flags[:, 10 - k :] = False
    positives = 10 - k
    pos_term = math.log(1 + k + 1e-4 * math.exp(-a / tau))
    extra = math.log(1 + k * math.exp(a / tau) + 1e-4)
    expected = (positives * pos_term + extra) / (positives + 1e-4)
    assert ctc_loss(teacher, student, flags, tau).item() == pytest.approx(expected, rel=1e-10)


def test_no_negatives_and_non_negative_dots_give_a_near_zero_loss_and_large_dots_stay_finite():
    gen = torch.Generator().manual_seed(1)
    teacher = torch.rand(4, 2, 8, generator=gen)
    student = torch.rand(4, 10, 8, generator=gen)
    loss = ctc_loss(teacher, student, torch.ones(4, 10))
    assert 0 <= loss.item() <= 1.1e-4
    big = ctc_loss(teacher * 40, student * 40, torch.tensor([[1, 1, 0, 1, 0, 1, 1, 1, 1, 0]] * 4))
    assert torch.isfinite(big)  # exp(q . p / tau) alone would overflow float32 here


def test_gradients_reach_the_student_and_the_encoder_not_the_teacher():
    model = tiny_toco().train()
    x, view2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    local = torch.randn(2, 4, 3, 12, 12)
    out = model(x)
    tokens = torch.stack([out.class_token, model.class_tokens(view2)], dim=1)
    teacher, student = model.contrast(tokens, local)
    flags = torch.tensor([[1, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 0]])
    ctc_loss(teacher, student, flags).backward()
    assert all(p.grad is None for p in model.ctc.teacher.parameters())
    assert model.ctc.student.mlp[0].weight.grad.abs().sum() > 0
    assert model.backbone.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    assert model.classifier.weight.grad is None


def test_errors_name_the_bad_input():
    with pytest.raises(ToCoError) as err:
        ctc_loss(torch.rand(2, 2, 8), torch.rand(2, 10, 8), torch.ones(2, 9))
    assert "flags (B, V)" in error_of(err)
    with pytest.raises(ToCoError):
        ctc_loss(torch.rand(2, 2, 8), torch.rand(2, 10, 8), torch.ones(2, 10), temperature=0.0)
    with pytest.raises(ToCoError):
        CTCHeads(8, momentum=1.5)
    with pytest.raises(ToCoError):
        CTCHeads(8, out_dim=4, hidden_dim=4, bottleneck_dim=4)(torch.rand(2, 8), torch.rand(2, 3, 8))
