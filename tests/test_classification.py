"""Backbone factory, safe weight loading and the three ClassificationTask fine-tuning modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from visionkit.backbones import BackboneError, create_backbone
from visionkit.core.params import param_groups, parameter_report
from visionkit.core.weights import WeightsError
from visionkit.tasks import ClassificationTask

X = torch.rand(2, 3, 32, 32)


def _step(task: ClassificationTask) -> None:
    task.train()
    opt = torch.optim.AdamW(param_groups(task, 0.05), lr=1e-2)
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3])}
    task.compute_loss(batch, "train")["loss"].backward()
    opt.step()


def test_unknown_backbone_and_offline_pretrained() -> None:
    with pytest.raises(BackboneError, match="'resnet_nope' is not a timm model name"):
        create_backbone("resnet_nope")
    with pytest.raises(BackboneError, match="checkpoint_path"):
        create_backbone("resnet18", pretrained=True)
    with pytest.raises(BackboneError, match="not an open_clip model name"):
        create_backbone("open_clip:NoSuchCLIP")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_path_loads_weights_and_reinitialises_other_heads(tmp_path: Path, suffix: str) -> None:
    src = create_backbone("test_resnet", num_classes=4)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    same = create_backbone("test_resnet", num_classes=4, checkpoint_path=str(path)).eval()
    assert torch.equal(same(X), src.eval()(X))
    other = create_backbone("test_resnet", num_classes=7, checkpoint_path=str(path))
    assert torch.equal(other.state_dict()["conv1.0.weight"], state["conv1.0.weight"])
    assert other.fc.out_features == 7


def test_lightning_checkpoint_prefixes_are_stripped(tmp_path: Path) -> None:
    task = ClassificationTask(backbone="test_resnet", num_classes=4)
    torch.save({"state_dict": task.state_dict()}, tmp_path / "task.ckpt")
    net = create_backbone("test_resnet", num_classes=4, checkpoint_path=str(tmp_path / "task.ckpt")).eval()
    assert torch.equal(net(X), task.model.eval()(X))


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("test_resnet", checkpoint_path=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="could not be read"):
        create_backbone("test_resnet", checkpoint_path=str(tmp_path / "junk.pth"))
    save_file({"conv1.0.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        create_backbone("test_resnet", checkpoint_path=str(tmp_path / "wrong.safetensors"))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="could not be read"):
        create_backbone("test_resnet", checkpoint_path=str(tmp_path / "evil.pth"))


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


def test_param_groups_exclude_norms_biases_and_tokens() -> None:
    task = ClassificationTask(backbone="test_vit", backbone_kwargs={"patch_size": 4}, image_size=32, num_classes=4)
    decay, no_decay = param_groups(task, 0.1)
    names = {id(p): n for n, p in task.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "model.cls_token" in no_decay_names and "model.pos_embed" in no_decay_names
    assert any("norm" in n for n in no_decay_names) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == parameter_report(task).trainable


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


def test_frozen_parts_stay_in_eval_and_adapter_dropout_trains() -> None:
    from visionkit.tuners import LoRATuner

    net = create_backbone("test_vit", num_classes=4, patch_size=4, image_size=32, drop_rate=0.1, drop_path_rate=0.5)
    tuner = LoRATuner(net, r=2, dropout=0.1, targets=["blocks.5.attn.qkv"], trainable=("head.",)).train()
    dropouts = [m for n, m in tuner.named_modules() if "lora_dropout" in n and isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.training for m in dropouts)
    frozen_block = tuner.base_model.blocks[4]
    assert not any(m.training for m in frozen_block.modules())  # drop-path, norms, dropout of a frozen block
    assert not tuner.base_model.pos_drop.training and not tuner.base_model.patch_embed.training
    assert tuner.base_model.blocks[5].attn.qkv.training and not tuner.base_model.blocks[5].norm1.training
    tuner.eval()
    assert not any(m.training for m in tuner.modules())
