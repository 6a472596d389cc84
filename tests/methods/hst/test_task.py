"""HSTTask and HSTSegmentationTask: what trains, the pyramid decoder, panels, and the CLI's one-line bad inputs."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import cli_error_line
from visionkit.methods.hst import HST, HSTError, HSTSegmentationTask, HSTTask, PyramidDecoder

VIT = {"backbone": "test_vit", "backbone_kwargs": {"patch_size": 8}, "image_size": 32}
CLASSIFY = str(REPO / "configs" / "hst" / "digits_transfer.yaml")
SEGMENT = str(REPO / "configs" / "hst" / "shapes_segmentation.yaml")
ONE_STEP = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false"]

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_classification_task_trains_the_official_set_and_draws_the_side_stages() -> None:
    task = HSTTask(num_classes=4, **VIT)
    assert isinstance(task.model, HST)
    trainable = {n.removeprefix("model.") for n, p in task.named_parameters() if p.requires_grad}
    assert "side_network.meta_tokens" in trainable and "side_network.head.weight" in trainable
    vit_trainable = {n for n in trainable if n.startswith("base_model.")}
    assert vit_trainable and all(".norm" in n for n in vit_trainable)  # only the blocks' LayerNorms
    batch = {"image": torch.rand(3, 3, 32, 32), "label": torch.tensor([0, 1, 2])}
    panels = task.visualize(batch, None)
    assert {"predictions", "side_stage1_stride4", "side_stage4_stride32"} <= set(panels)
    assert all(panels[k].shape == (3, 3, 32, 32) for k in panels if k.startswith("side_stage"))


def test_detached_task_keeps_the_vit_out_of_autograd() -> None:
    task = HSTTask(num_classes=4, detached=True, **VIT)
    assert not any(p.requires_grad for n, p in task.model.named_parameters() if n.startswith("base_model."))
    assert task.model.meta_tokens is None


def test_pyramid_decoder_gives_stride_4_scores_from_any_number_of_levels() -> None:
    maps = [torch.rand(2, c, 32 // 2**s, 48 // 2**s) for s, c in enumerate((8, 16, 24, 32))]
    out = PyramidDecoder([8, 16, 24, 32], num_classes=5, width=16)(maps)
    assert out.shape == (2, 5, 32, 48)
    with pytest.raises(HSTError, match="built for 4 maps, got 3"):
        PyramidDecoder([8, 16, 24, 32], 5)(maps[:3])


def test_segmentation_task_trains_side_network_and_decoder_not_the_vit_weights() -> None:
    task = HSTSegmentationTask(num_classes=3, scale=0.5, decoder_width=16, **VIT)
    assert task.model.hst.side_network.head_norm is None  # no classification head
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert any(n.startswith("model.decoder.") for n in trainable)
    assert not any(".attn." in n or ".mlp." in n for n in trainable if ".base_model." in n)
    assert task(torch.rand(2, 3, 32, 32)).shape == (2, 4, 32, 32)  # background + 3 classes at the input size
    assert task(torch.rand(2, 3, 64, 32)).shape == (2, 4, 64, 32)  # test_vit takes dynamic sizes
    loss = task.compute_loss({"image": torch.rand(2, 3, 32, 32), "mask": torch.randint(0, 4, (2, 32, 32))}, "train")["loss"]
    loss.backward()
    assert task.model.hst.meta_tokens.grad is not None  # official semantics: gradients reach the meta tokens
    batch = {"image": torch.rand(2, 3, 32, 32), "mask": torch.randint(0, 4, (2, 32, 32))}
    assert {"prediction", "ground_truth", "side_stage2_stride8"} <= set(task.visualize(batch, None))


@pytest.mark.parametrize(
    ("config", "args", "words"),
    [
        (CLASSIFY, ["--model.init_args.asset", "null", "--model.init_args.backbone", "test_resnet"],
         "'test_resnet' has no token blocks"),
        (SEGMENT, ["--data.init_args.image_size", "48"], "input size 48x48 is not divisible by 32"),
        (CLASSIFY, ["--data.init_args.batch_size", "1"], "batch size 1 in training"),
    ],
    ids=["cnn-backbone", "indivisible-size", "batch-size-1"],
)
def test_bad_input_is_one_line_from_the_cli(capsys: pytest.CaptureFixture, config: str, args: list[str], words: str) -> None:
    line = cli_error_line(capsys, ["fit", "--config", config, *ONE_STEP, *args])
    assert words in line
