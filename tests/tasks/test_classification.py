"""``ClassificationTask``: the three fine-tuning modes (full, linear probe, LoRA), argument checks,
input normalisation."""

from __future__ import annotations

import pytest
import torch

from visionkit.core.params import param_groups
from visionkit.tasks import ClassificationTask

X = torch.rand(2, 3, 32, 32)


def _step(task: ClassificationTask) -> None:
    task.train()
    opt = torch.optim.AdamW(param_groups(task, 0.05), lr=1e-2)
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3])}
    task.compute_loss(batch, "train")["loss"].backward()
    opt.step()


def test_full_finetune_trains_everything() -> None:
    task = ClassificationTask(backbone="test_resnet", num_classes=4)
    report = task.parameter_report()
    assert report.trainable == report.total > 0


def test_linear_probe_freezes_backbone_and_batchnorm_statistics() -> None:
    task = ClassificationTask(backbone="test_resnet", num_classes=4, finetune="linear")
    before = {k: v.clone() for k, v in task.model.base_model.state_dict().items()}
    _step(task)
    after = task.model.base_model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("fc.") for k in changed)
    assert not task.model.base_model.layer1.training and task.model.base_model.fc.training
    report = task.parameter_report()
    assert report.trainable == sum(p.numel() for p in task.model.base_model.fc.parameters())


def test_lora_adapts_qkv_of_a_vit() -> None:
    task = ClassificationTask(
        backbone="test_vit", backbone_kwargs={"patch_size": 4}, image_size=32, num_classes=4, finetune="lora", lora_r=4
    )
    net = task.model.base_model
    assert net.patch_embed.img_size == (32, 32)
    assert len(task.model.targets) == len(net.blocks) and all(t.endswith("attn.qkv") for t in task.model.targets)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".head." in n for n in trainable)
    d = net.embed_dim
    expected = len(net.blocks) * 4 * (d + 3 * d) + sum(p.numel() for p in net.head.parameters())
    assert task.parameter_report().trainable == expected
    frozen = {k: v.clone() for k, v in net.state_dict().items() if "lora_" not in k and not k.startswith("head")}
    _step(task)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in frozen.items())
    with pytest.raises(ValueError, match="not module names"):
        ClassificationTask(backbone="test_resnet", num_classes=4, finetune="lora", lora_targets=["nope"])


def test_invalid_task_arguments() -> None:
    with pytest.raises(ValueError, match="finetune"):
        ClassificationTask(finetune="half")
    with pytest.raises(ValueError, match="lr"):
        ClassificationTask(lr=0.0)


def test_input_normalisation_uses_the_backbone_statistics() -> None:
    task = ClassificationTask(backbone="test_resnet", num_classes=4, normalize_input=True).eval()
    mean = torch.tensor(task.model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(task.model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(task(X), task.model((X - mean) / std))
    assert not any("normalize" in k for k in task.state_dict())
