"""Training-memory meter: exact hand-counted saved-tensor bytes; a no-grad side tuner saves nothing
inside the frozen backbone while full fine-tuning does; state bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.helpers import PooledSide, make_vit, mlp
from visionkit.memory.meter import SavedTensorMeter, measure_training_step, state_bytes
from visionkit.tuners import SideTuner

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

F32 = 4  # bytes per float32 element


def test_linear_relu_stack_matches_hand_count():
    # Saved for backward (B=3), each storage once, parameters excluded:
    #   Linear(4,8) saves its input x            3*4 floats   (weight: a parameter, excluded)
    #   ReLU saves its output h1                 3*8 floats
    #   Linear(8,8) saves its input h1           (same storage as above: not counted again)
    #   ReLU saves its output h2                 3*8 floats
    #   Linear(8,2) saves its input h2           (same storage)
    net = mlp()
    x = torch.randn(3, 4)
    with SavedTensorMeter(net, per_module=net) as meter:
        loss = net(x).sum()
    assert meter.bytes == (3 * 4 + 3 * 8 + 3 * 8) * F32 == 240
    assert meter.count == 3
    assert meter.by_module == {"0": 3 * 4 * F32, "1": 3 * 8 * F32, "3": 3 * 8 * F32}
    loss.backward()  # the graph still works


def test_frozen_layers_save_no_parameters():
    # frozen first Linear and an input without grad: nothing before ReLU 1 is recorded; Linear 2 saves h1
    net = mlp()
    net[0].requires_grad_(False)
    with SavedTensorMeter(net) as meter:
        net(torch.randn(3, 4)).sum()
    assert meter.bytes == (3 * 8 + 3 * 8) * F32
    # a frozen Linear whose input needs grad saves its weight (a parameter): excluded
    frozen = nn.Sequential(nn.Linear(4, 8), nn.ReLU()).requires_grad_(False)
    x = torch.randn(3, 4, requires_grad=True)
    with SavedTensorMeter(frozen) as meter:
        frozen(x).sum()
    assert meter.packed >= 2 and meter.bytes == 3 * 8 * F32  # only the ReLU output


def test_views_of_one_storage_count_once():
    lin = nn.Linear(4, 6)
    x = torch.randn(5, 4)
    with SavedTensorMeter(lin) as meter:
        q, k = lin(x).chunk(2, dim=-1)  # two (5, 3) views of one (5, 6) storage, like q/k of a qkv output
        (q * k).sum()
    # the Linear saves x (5*4; its weight is a parameter); mul saves q and k: one (5, 6) storage
    assert meter.packed == 3  # x, q, k (the weight is not saved: x needs no gradient)
    assert meter.bytes == (5 * 4 + 5 * 6) * F32
    assert meter.count == 2


def test_meter_closes_on_exception():
    net = mlp()
    with pytest.raises(RuntimeError, match="boom"), SavedTensorMeter(net):
        raise RuntimeError("boom")
    with SavedTensorMeter(net) as meter:
        pass
    net(torch.randn(2, 4)).sum()  # outside every meter: nothing recorded
    assert meter.bytes == 0


def test_state_bytes_of_a_step_with_adamw():
    net = mlp()
    net[0].requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad])
    report = measure_training_step(net, lambda: net(torch.randn(3, 4)).sum(), opt)
    total = sum(p.numel() for p in net.parameters())
    trainable = total - (4 * 8 + 8)
    assert report.parameter_bytes == total * F32 and report.buffer_bytes == 0
    assert report.gradient_bytes == trainable * F32
    assert report.optimizer_bytes == 2 * trainable * F32 + 4 * F32  # exp_avg, exp_avg_sq + 4 step scalars
    assert report.activation_bytes == (3 * 8 + 3 * 8) * F32
    assert report.total_bytes == report.state_bytes + report.activation_bytes
    assert report.trainable_params == trainable and report.total_params == total
    assert report.peak_rss_bytes > 0 and report.step_time_s > 0 and report.cuda_max_allocated_bytes is None


def test_measure_rejects_a_loss_without_grad():
    net = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="does not require grad"):
        measure_training_step(net, lambda: net(torch.randn(2, 4)).sum())


# ---- a no_grad side tuner saves nothing inside the backbone; full FT saves strictly more ------
class FullFT(nn.Module):
    """Full fine-tuning baseline on the same backbone and the same side head."""

    def __init__(self, backbone: nn.Module, side: nn.Module) -> None:
        super().__init__()
        self.base_model = backbone
        self.side_network = side

    def forward(self, x: Tensor) -> Tensor:
        from visionkit.backbones import get_intermediates

        return self.side_network(get_intermediates(self.base_model, x, output_fmt="NLC"))


def test_no_grad_side_tuner_saves_nothing_in_backbone_blocks():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    side = SideTuner(make_vit(), PooledSide([64] * 6), output_fmt="NLC", backbone_no_grad=True)
    full = FullFT(make_vit(), PooledSide([64] * 6))
    for model in (side, full):
        model.train()
    reports = {
        name: measure_training_step(model, lambda m=model: F.cross_entropy(m(x), y), per_module=True)
        for name, model in (("side", side), ("full", full))
    }
    side_blocks = sum(b for n, b in reports["side"].by_module.items() if n.startswith("base_model."))
    full_blocks = sum(b for n, b in reports["full"].by_module.items() if n.startswith("base_model.blocks."))
    assert side_blocks == 0
    assert full_blocks > 0
    assert reports["full"].activation_bytes > reports["side"].activation_bytes > 0
    assert all(p.grad is None for p in side.base_model.parameters())


def test_state_bytes_counts_buffers():
    bn = nn.BatchNorm1d(5)
    sb = state_bytes(bn)
    assert sb.parameters == 10 * F32 and sb.buffers == 10 * F32 + 8  # running mean/var + int64 counter
