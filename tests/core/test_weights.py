"""Safe weight loading (``create_backbone(checkpoint_path=...)``): safetensors and ``.pth`` files, Lightning
prefixes stripped, other heads re-initialised, missing, unreadable, mismatched or pickled files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from visionkit.backbones import create_backbone
from visionkit.core.weights import WeightsError
from visionkit.tasks import ClassificationTask

X = torch.rand(2, 3, 32, 32)


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


def test_a_task_checkpoint_with_other_networks_gives_its_model_part(tmp_path) -> None:
    import torch
    from torch import nn

    from visionkit.core.weights import load_weights

    torch.manual_seed(0)
    net, policy = nn.Linear(3, 2), nn.Linear(4, 4)
    state = {f"model.{k}": v for k, v in net.state_dict().items()} | {f"masker.policy.{k}": v for k, v in policy.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "task.ckpt")
    fresh = nn.Linear(3, 2)
    assert load_weights(fresh, tmp_path / "task.ckpt") == []
    torch.testing.assert_close(fresh.weight, net.weight, rtol=0, atol=0)
