"""UniPTTask and UniPTRetrievalTask: training steps, frozen backbones, panels, errors, bench rows."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import cli_error_line
from tests.methods.unipt.test_model import tiny_clip
from visionkit.methods.unipt import UniPTError, UniPTRetrievalTask, UniPTTask


def image_batch(n: int = 6, classes: int = 5) -> dict:
    gen = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 3, 32, 32, generator=gen), "label": torch.randint(0, classes, (n,), generator=gen)}


def caption_batch() -> dict:
    gen = torch.Generator().manual_seed(1)
    captions = ["a red circle in the top left", "a blue square", "a green ring at the top", "a blue square"]
    return {"image": torch.rand(4, 3, 32, 32, generator=gen), "caption": captions, "image_id": torch.tensor([0, 1, 2, 1])}


def step(task, batch) -> None:
    task.train()
    opt = task.configure_optimizers()
    opt.zero_grad()
    loss = task.compute_loss(batch, "train")["loss"]
    loss.backward()
    opt.step()


def test_unipt_task_step_changes_only_the_side_network():
    task = UniPTTask(backbone="test_vit", backbone_kwargs={"patch_size": 8}, num_classes=5, image_size=32, scheduler="none", lr=1e-2)
    backbone = task.model.base_model
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    side_before = {k: v.clone() for k, v in task.model.side_network.state_dict().items()}
    step(task, image_batch())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None for p in backbone.parameters())
    changed = [k for k, v in task.model.side_network.state_dict().items() if not torch.equal(side_before[k], v)]
    # all but the shared gate's bias: the softmax over layers cancels it, so its gradient is 0 up to rounding
    # (AdamW turns a rounding-level gradient into a full step, an exact 0 into none: either may happen)
    assert set(side_before) - set(changed) <= {"unipt.gate.bias"}
    report = task.parameter_report()
    assert report.trainable == sum(p.numel() for p in task.model.side_network.parameters())
    assert "finetune" not in task.hparams and task.hparams.reduction == 2


def test_unipt_task_from_the_shipped_vit_asset_and_its_panels():
    task = UniPTTask(asset="shapes_test_vit", num_classes=10, image_size=32)
    panels = task.visualize(image_batch(4, 10), None)
    assert panels["predictions"].shape[0] == 4
    assert panels["layer_weights"].shape[:2] == (1, 3)
    reads = [k for k in panels if k.startswith("reads_layer")]
    assert len(reads) == 1 and panels[reads[0]].shape == (4, 3, 32, 32)
    pi = task.model.last_layer_weights
    assert pi.shape == (4, 6) and torch.allclose(pi.sum(1), torch.ones(4))


def test_unipt_task_refuses_a_cnn_backbone():
    with pytest.raises(UniPTError, match="'test_resnet'.*token layers"):
        UniPTTask(backbone="test_resnet", num_classes=3)


def test_cli_error_for_a_cnn_backbone_is_one_line(capsys):
    line = cli_error_line(capsys, ["fit", "--model", "UniPTTask", "--model.backbone", "test_resnet",
                                   "--data", "DigitsDataModule", "--trainer.fast_dev_run", "true"])
    assert "test_resnet" in line and "token layers" in line


def test_unipt_retrieval_task_trains_only_unipt():
    task = UniPTRetrievalTask(image_size=32, scheduler="none")
    clip = task.clip
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    step(task, caption_batch())
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    assert all(p.grad is None for p in clip.parameters())
    trainable = {n.split(".")[0] for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == {"image_unipt", "text_unipt"}
    out = task.compute_loss(caption_batch(), "val")
    assert out["preds"].shape == (4, 2, 64)
    torch.testing.assert_close(out["preds"].norm(dim=-1), torch.ones(4, 2))


@pytest.mark.parametrize(("towers", "expected"), [("image", {"image_unipt"}), ("text", {"text_unipt"})])
def test_unipt_on_one_tower_only(towers, expected):
    task = UniPTRetrievalTask(image_size=32, towers=towers, variant="token", loss="triplet")
    trainable = {n.split(".")[0] for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == expected
    loss = task.compute_loss(caption_batch(), "train")["loss"]
    assert loss.grad_fn is not None


def test_unipt_retrieval_panels():
    task = UniPTRetrievalTask(image_size=32)
    panels = task.visualize(caption_batch(), None)
    assert panels["image_to_text"].shape[0] == 4
    assert panels["image_layer_weights"].shape[:2] == (1, 3) and panels["text_layer_weights"].shape[:2] == (1, 3)


def test_open_clip_resnet_tower_refused_through_a_json_config(tmp_path):
    import json

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
           "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    path = tmp_path / "vk_test_rn.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(UniPTError, match="image tower"):
        UniPTRetrievalTask(backbone=f"open_clip:{path}", image_size=32)


def test_bench_rows_are_in_the_case_table():
    import importlib.util

    from visionkit.memory.benchmark import BenchmarkConfig, build_task, task_case

    script = REPO / "scripts" / "bench_memory.py"
    spec = importlib.util.spec_from_file_location("bench_memory", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert {"unipt", "unipt_all_tokens"} <= set(bench.CASES)
    config = BenchmarkConfig(backbone="test_vit", image_size=32, num_classes=4, backbone_kwargs={"patch_size": 8})
    model, loss_fn, optimizer = task_case(build_task(bench.CASES["unipt"], config))
    loss = loss_fn({"image": torch.rand(2, 3, 32, 32), "label": torch.tensor([0, 1])})
    loss.backward()
    optimizer.step()
    assert model.hparams.readout == "cls" and model.hparams.image_size == 32
    assert build_task(bench.CASES["unipt_all_tokens"], config).hparams.readout == "mean"


def test_tiny_clip_helper_is_shared():
    assert tiny_clip().visual.image_size == (32, 32)
