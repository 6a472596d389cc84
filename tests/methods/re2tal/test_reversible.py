"""Re²TAL reversible runs on residual MLP branches (``ReversibleSequence``): spec A5 oracles 1, 2, 4, 5, 7, 8,
10, 11 and the gradient part of 3; the timm-model oracles are in ``test_rewire.py``.

Branches are 2-layer ReLU MLPs ``W2 relu(W1 z)`` with weights ``N(0, gain^2 / fan_in)`` and zero biases.
Identities are checked in float64; tolerances are stated per test.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import pytest
import torch
from timm.layers import DropPath
from torch import Tensor, nn

from tests.helpers import error_of
from visionkit.memory import SavedTensorMeter
from visionkit.methods.re2tal import ReversibleSequence, RewireError, set_mode

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

F64 = torch.float64


def mlp_branch(dim: int, gain: float = 1.0, dtype: torch.dtype = F64, dropout: float = 0.0,
               drop_path: float = 0.0, last_scale: float = 1.0) -> nn.Sequential:
    """``drop_path(W2 dropout(relu(W1 z)))``; ``last_scale`` multiplies ``W2`` (the branch is linear in it)."""
    branch = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), DropPath(drop_path))
    for lin in (branch[0], branch[3]):
        nn.init.normal_(lin.weight, std=gain / math.sqrt(dim))
        nn.init.zeros_(lin.bias)
    with torch.no_grad():
        branch[3].weight.mul_(last_scale)
    return branch.to(dtype)


def mlp_run(n: int, dim: int = 16, mode: str = "reversible", **kwargs: float) -> ReversibleSequence:
    return ReversibleSequence([mlp_branch(dim, **kwargs) for _ in range(n)], mode=mode)


def explicit_rewired(x: Tensor, branches: list[nn.Module]) -> Tensor:
    """Spec A2.2 written out: ``z_{-1} = z_0 = x``, ``z_k = z_{k-2} + M_k(z_{k-1})``, mean of the last two."""
    z = [x, x]
    for m in branches:
        z.append(z[-2] + m(z[-1]))
    return (z[-1] + z[-2]) / 2


def rel_err(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||b||`` (``||a||`` when ``b`` is zero)."""
    scale = b.norm() if b.norm() > 0 else a.norm().clamp_min(1e-300)
    return float(((a - b).norm() / scale).detach())


class Step(NamedTuple):
    output: Tensor
    input_grad: Tensor | None
    grads: list[Tensor]


def step(model: nn.Module, x: Tensor, seed: int | None = None, input_grad: bool = True) -> Step:
    """Forward + backward of ``sum(y^2)`` from a fresh leaf copy of ``x``: output, input grad and the grads of
    the trainable parameters (each checked to exist); grads cleared first."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(input_grad)
    if seed is not None:
        torch.manual_seed(seed)
    y = model(x)
    y.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "a trainable parameter got no gradient"
    return Step(y.detach(), x.grad, grads)  # type: ignore[arg-type]


def leaf(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_(True)


# ---- oracle 1: recurrence identity -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reversible", "vanilla"])
def test_output_is_the_rewired_recurrence(mode: str) -> None:
    """Oracle 1: the run equals the explicit loop to 1e-12 (float64), with and without autograd, N = 1 and 5."""
    for n in (1, 5):
        run = mlp_run(n, mode=mode)
        x = torch.randn(4, 16, dtype=F64)
        expected = explicit_rewired(x, list(run.branches))
        with torch.no_grad():
            assert rel_err(run(x), expected) <= 1e-12
        out = run(leaf(x))
        assert out.requires_grad
        assert rel_err(out.detach(), expected) <= 1e-12


# ---- oracle 2: invertibility and its growth with branch gain ---------------------------------------------
def reconstruction_error(gain: float, dtype: torch.dtype) -> float:
    """12 branches, D = 64: ``max |inverse(forward(x)) - x| / max |x|`` over both rebuilt streams."""
    torch.manual_seed(0)
    run = mlp_run(12, dim=64, gain=gain, dtype=dtype)
    x = torch.randn(8, 64, dtype=dtype)
    prev, last = run.streams(x)
    first, second = run.inverse(prev.detach(), last.detach())
    return max(float((first - x).abs().max()), float((second - x).abs().max())) / float(x.abs().max())


def test_inverse_rebuilds_the_input_and_the_error_grows_with_branch_gain() -> None:
    """Oracle 2 (spec table, 12 ReLU-MLP branches, D = 64): float64 rebuilds to <= 1e-10 for gain <= 1
    (measured 3e-16 at 0.5, 4e-15 at 1), 2e-6 at gain 2; float32 blows up at gain 2 (measured 1e3)."""
    errors = {gain: reconstruction_error(gain, F64) for gain in (0.5, 1.0, 2.0)}
    assert errors[0.5] <= 1e-10 and errors[1.0] <= 1e-10, errors
    assert errors[0.5] < errors[1.0] < errors[2.0], errors
    assert errors[2.0] > 1e4 * errors[1.0], errors
    assert reconstruction_error(2.0, torch.float32) > 1.0


# ---- oracle 3 (gradients on MLP branches) and oracle 8 (RNG) -------------------------------------------------
@pytest.mark.parametrize(("dtype", "tol"), [(F64, 1e-8), (torch.float32, 1e-4)])
def test_custom_backward_matches_vanilla_autograd(dtype: torch.dtype, tol: float) -> None:
    """Oracle 3: input and every parameter gradient agree with plain autograd (relative 1e-8 in float64,
    1e-4 in float32), with dropout 0.2 and drop-path 0.5 in train mode (same seed before each forward)."""
    torch.manual_seed(0)
    rev = mlp_run(6, dtype=dtype, dropout=0.2, drop_path=0.5).train()
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = torch.randn(8, 16, dtype=dtype)
    r, v = step(rev, x, seed=3), step(van, x, seed=3)
    assert rel_err(r.output, v.output) <= tol
    assert r.input_grad is not None and rel_err(r.input_grad, v.input_grad) <= tol
    for a, b in zip(r.grads, v.grads, strict=True):
        assert rel_err(a, b) <= tol


def masks_of(model: nn.Module, x: Tensor) -> Tensor:
    """Which (sample, branch) pairs drop-path zeroed in one forward: branch outputs recorded by hooks."""
    outs: list[Tensor] = []
    handles = [m[4].register_forward_hook(lambda _m, _i, o: outs.append(o.detach())) for m in model.branches]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([(o.abs().sum(-1) == 0) for o in outs])


def test_rng_replay_same_masks_new_masks_each_step_and_global_stream_untouched() -> None:
    """Oracle 8 with dropout 0.3 and drop-path 0.5: (a) two consecutive steps each give vanilla's gradients
    (1e-10 relative) although the recompute runs later; (b) the second step draws other masks than the first;
    (c) after the two steps the global CPU generator state is exactly the one vanilla mode leaves."""
    torch.manual_seed(0)
    rev = mlp_run(5, dropout=0.3, drop_path=0.5).train()
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = torch.randn(32, 16, dtype=F64)
    steps, states = {}, {}
    for name, model in (("reversible", rev), ("vanilla", van)):
        torch.manual_seed(7)
        steps[name] = [step(model, x) for _ in range(2)]
        states[name] = torch.get_rng_state()
    for r, v in zip(steps["reversible"], steps["vanilla"], strict=True):
        assert rel_err(r.input_grad, v.input_grad) <= 1e-10  # (a)
        assert all(rel_err(a, b) <= 1e-10 for a, b in zip(r.grads, v.grads, strict=True))
    first_step, second_step = steps["reversible"]
    assert rel_err(first_step.output, second_step.output) > 0.1  # (b): other masks, other outputs
    torch.manual_seed(11)
    first, second = masks_of(rev, x), masks_of(rev, x)
    assert first.any() and not torch.equal(first, second)  # (b) on the drop-path masks themselves
    assert torch.equal(states["reversible"], states["vanilla"])  # (c)


# ---- oracle 4: small-epsilon limit -----------------------------------------------------------------------------
def test_rewired_is_x_plus_half_the_branches_to_first_order() -> None:
    """Oracle 4: with branches eps * M_k, ``||rewired(x) - (x + 1/2 sum_k M_k(x))|| = O(eps^2)``: the error ratio
    between eps = 1e-2 and 1e-3 is about 100 (accepted 60-160); and rewired differs from the original residual
    stack by 1/2 sum_k M_k(x) (within 5 % at eps = 1e-2), so the averaging is not a sum in disguise."""
    x = torch.randn(6, 16, dtype=F64)
    errors = {}
    for eps in (1e-2, 1e-3):
        torch.manual_seed(0)
        run = mlp_run(6, last_scale=eps)
        with torch.no_grad():
            half_sum = sum(m(x) for m in run.branches) / 2
            rewired = run(x)
            original = x
            for m in run.branches:
                original = original + m(original)
        errors[eps] = float((rewired - (x + half_sum)).norm())
        if eps == 1e-2:
            assert rel_err(original - rewired, half_sum) <= 0.05
    assert 60 <= errors[1e-2] / errors[1e-3] <= 160, errors


# ---- oracle 5: zero branches --------------------------------------------------------------------------------
def test_zero_branches_give_the_identity_exactly() -> None:
    """Oracle 5: zero last layers make every branch exactly 0, so z_k = x and (x + x) / 2 = x bit for bit
    (IEEE doubling and halving are exact), in both modes, with the gradient of sum(y) exactly 1."""
    for mode in ("reversible", "vanilla"):
        run = mlp_run(4, mode=mode, last_scale=0.0)
        x = leaf(torch.randn(3, 16, dtype=F64))
        y = run(x)
        assert torch.equal(y, x)
        y.sum().backward()
        assert torch.equal(x.grad, torch.ones_like(x))


# ---- oracle 7: memory constant in depth -------------------------------------------------------------------------
def saved_bytes(run: nn.Module, x: Tensor) -> int:
    """Bytes autograd saves in one forward of ``run`` (parameters excluded); the backward is run after it."""
    x = leaf(x)
    with SavedTensorMeter(run) as meter:
        y = run(x)
    y.sum().backward()
    assert x.grad is not None
    return meter.bytes


def test_saved_bytes_are_constant_in_depth_for_reversible_and_grow_for_vanilla() -> None:
    """Oracle 7 (float32, (64, 32) input, depth 2, 4, 8, 16): the reversible run saves exactly its two
    output streams, 2 * 64 * 32 * 4 bytes, whatever the depth; vanilla grows about linearly (16 vs 2: > 6x)."""
    x = torch.randn(64, 32)
    reversible, vanilla = {}, {}
    for n in (2, 4, 8, 16):
        torch.manual_seed(n)
        run = mlp_run(n, dim=32, dtype=torch.float32)
        reversible[n] = saved_bytes(run, x)
        vanilla[n] = saved_bytes(set_mode(run, "vanilla"), x)
    assert all(b == 2 * x.numel() * 4 for b in reversible.values()), reversible
    assert vanilla[2] < vanilla[4] < vanilla[8] < vanilla[16], vanilla
    assert vanilla[16] / vanilla[2] > 6, vanilla
    assert vanilla[16] > 10 * reversible[16]


# ---- oracle 10: input without grad ----------------------------------------------------------------------------
def test_parameters_get_gradients_when_the_input_does_not_require_grad() -> None:
    """Oracle 10: a stage input without grad (frozen stem) still gives every branch parameter vanilla's
    gradient (1e-10 relative); with nothing trainable the output simply does not require grad."""
    torch.manual_seed(0)
    rev = mlp_run(4)
    van = set_mode(copy.deepcopy(rev), "vanilla")
    x = torch.randn(5, 16, dtype=F64)
    with SavedTensorMeter(rev) as meter:
        y = rev(x)
    assert meter.bytes == 2 * x.numel() * 8  # the reversible Function ran, not the plain loop
    y.square().sum().backward()
    vanilla = step(van, x, input_grad=False)
    for p, g in zip(rev.parameters(), vanilla.grads, strict=True):
        assert p.grad is not None and rel_err(p.grad, g) <= 1e-10
    rev.requires_grad_(False)
    assert not rev(x).requires_grad


# ---- oracle 11: eval path --------------------------------------------------------------------------------------
def test_no_grad_eval_output_equals_the_training_forward_for_deterministic_branches() -> None:
    """Oracle 11: without random modules, the no-grad eval output equals the train-mode reversible forward
    (1e-12 relative); with dropout 0.5 in the branches, eval turns it off (equal to the explicit loop)."""
    torch.manual_seed(0)
    run = mlp_run(5).train()
    x = torch.randn(4, 16, dtype=F64)
    trained = run(leaf(x)).detach()
    with torch.no_grad():
        assert rel_err(run.eval()(x), trained) <= 1e-12
    noisy = mlp_run(5, dropout=0.5).eval()
    with torch.no_grad():
        assert rel_err(noisy(x), explicit_rewired(x, list(noisy.branches))) <= 1e-12


# ---- errors --------------------------------------------------------------------------------------------------
def test_bad_mode_and_shape_changing_branch_are_one_line_errors() -> None:
    with pytest.raises(RewireError) as exc:
        mlp_run(2, mode="checkpoint")
    assert "mode must be 'reversible' or 'vanilla', got 'checkpoint'" in error_of(exc)
    run = ReversibleSequence([nn.Linear(16, 16), nn.Linear(16, 8)])
    with pytest.raises(RewireError) as exc:
        run(torch.randn(2, 16))
    assert "'branches.1' maps shape (2, 16) to (2, 8)" in error_of(exc)


class OwnGeneratorDropout(nn.Module):
    """Dropout whose mask comes from its own ``torch.Generator``: the RNG replay can't redraw it."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p, self.generator = p, torch.Generator().manual_seed(0)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) >= self.p
        return x * keep / (1 - self.p)


def test_a_branch_the_rng_replay_cannot_cover_fails_the_backward_in_one_line() -> None:
    """Its recompute differs from its forward, so the rebuilt input is wrong: one line, not wrong gradients."""
    torch.manual_seed(0)
    run = ReversibleSequence([nn.Sequential(nn.Linear(16, 16), OwnGeneratorDropout()) for _ in range(3)]).train()
    x = torch.randn(4, 16, requires_grad=True)
    with pytest.raises(RewireError) as exc:
        run(x).sum().backward()
    message = error_of(exc)
    assert "did not rebuild its input in the backward" in message and "RNG replay can't cover" in message
    assert "'branches.0' ... 'branches.2'" in message, message
    run.eval()  # without the random module the same run trains
    run(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_an_unstable_float32_reconstruction_fails_the_backward() -> None:
    """Oracle 2's float32 blow-up (12 branches of gain 2, rebuild error ~1e3) raises instead of returning gradients."""
    torch.manual_seed(0)
    run = mlp_run(12, dim=64, gain=2.0, dtype=torch.float32)
    with pytest.raises(RewireError, match="did not rebuild its input"):
        run(torch.randn(8, 64, requires_grad=True)).sum().backward()
