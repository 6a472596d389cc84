"""``SideTuner``: one optimisation step of a side-tuned task changes only the side network; the backbone
stays bit-identical."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from tests.helpers import PooledSide, make_resnet, make_vit
from visionkit.core.task import VisionTask
from visionkit.tuners import SideTuner

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def build_tuner(backbone: str, no_grad: bool, dropout: float = 0.0) -> SideTuner:
    if backbone == "test_resnet":
        net = make_resnet()
        widths = [info["num_chs"] for info in net.feature_info]
        return SideTuner(net, PooledSide(widths, dropout=dropout), backbone_no_grad=no_grad)
    net = make_vit()
    return SideTuner(net, PooledSide([64] * 3, dropout=dropout), indices=3, output_fmt="NLC", backbone_no_grad=no_grad)


class SideTask(VisionTask):
    """Minimal side-tuned classification task (the shape every side method's task takes)."""

    def __init__(self, backbone: str = "test_resnet", no_grad: bool = True, lr: float = 1.0e-2) -> None:
        super().__init__(lr=lr, weight_decay=0.0, scheduler="none")

    def configure_models(self) -> None:
        self.model = build_tuner(self.hparams.backbone, self.hparams.no_grad, dropout=0.1)

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        logits = self.model(batch["image"])
        return {"loss": F.cross_entropy(logits, batch["label"]), "preds": logits, "target": batch["label"]}


def one_step(task: VisionTask) -> Any:
    from lightning.pytorch import Trainer

    data = [{"image": torch.randn(3, 32, 32), "label": torch.tensor(i % 5)} for i in range(8)]
    trainer = Trainer(
        max_steps=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=4))
    return trainer


@pytest.mark.parametrize(("backbone", "no_grad"), [("test_resnet", True), ("test_vit", False)])
def test_one_step_changes_only_the_side_network(backbone, no_grad):
    task = SideTask(backbone=backbone, no_grad=no_grad)
    tuner = task.model
    before = {k: v.clone() for k, v in tuner.base_model.state_dict().items()}
    side_before = {k: v.clone() for k, v in tuner.side_network.state_dict().items()}
    trainer = one_step(task)
    assert trainer.global_step == 1

    after = tuner.base_model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():  # weights and BatchNorm running stats / counters alike
        assert torch.equal(value, after[key]), key
    if backbone == "test_resnet":
        assert any("running_mean" in k for k in before)
    changed = [k for k, v in tuner.side_network.state_dict().items() if not torch.equal(v, side_before[k])]
    assert sorted(changed) == sorted(side_before)

    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in task.parameters() if p.requires_grad}
    assert optimised == {id(p) for p in tuner.side_network.parameters()}

    report = tuner.parameter_report()
    side = sum(p.numel() for p in tuner.side_network.parameters())
    base = sum(p.numel() for p in tuner.base_model.parameters())
    assert report.trainable == side and report.total == base + side


def test_no_grad_backbone_gives_graph_free_features():
    tuner = build_tuner("test_vit", no_grad=True)
    feats = tuner.extract(torch.randn(2, 3, 32, 32))
    assert all(not f.requires_grad for f in feats.features)
    logits = tuner(torch.randn(2, 3, 32, 32))
    logits.sum().backward()
    assert all(p.grad is None for p in tuner.base_model.parameters())
    assert all(p.grad is not None for p in tuner.side_network.parameters())


def test_frozen_backbone_stays_eval_while_side_trains():
    tuner = build_tuner("test_resnet", no_grad=True, dropout=0.5)
    tuner.train()
    assert tuner.training and tuner.side_network.training and tuner.side_network.drop.training
    assert not any(m.training for m in tuner.base_model.modules())
    tuner.eval()
    assert not tuner.side_network.drop.training


def test_custom_extractor_and_kwargs():
    net = make_vit()
    seen = {}

    def extractor(backbone: nn.Module, x: Tensor) -> Tensor:
        seen["grad"] = torch.is_grad_enabled()
        return backbone.forward_features(x)[:, 0]

    tuner = SideTuner(net, nn.Linear(64, 5), extractor=extractor)
    assert tuner(torch.randn(2, 3, 32, 32)).shape == (2, 5) and seen["grad"] is False


def test_contradictions_are_errors():
    with pytest.raises(ValueError, match="backbone_no_grad=True but backbone parameters"):
        SideTuner(make_vit(), PooledSide([64]), trainable=["norm"])
    tuner = SideTuner(make_vit(), PooledSide([64]), trainable=["norm"], backbone_no_grad=False, indices=1)
    assert {n for n, p in tuner.base_model.named_parameters() if p.requires_grad} == {"norm.weight", "norm.bias"}
    with pytest.raises(ValueError, match="has no trainable parameters"):
        SideTuner(make_vit(), nn.Identity())
