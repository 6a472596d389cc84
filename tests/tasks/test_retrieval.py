"""``RetrievalTask`` (open_clip zero-shot / projection / full) and its losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import cli_error_line
from visionkit.backbones.factory import BackboneError
from visionkit.tasks import RetrievalTask
from visionkit.tasks.retrieval import clip_contrastive_loss, hinge_triplet_loss


def unit(*rows) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


# ---- losses ---------------------------------------------------------------------------------------------
def test_contrastive_loss_is_clip_infonce_and_masks_other_captions_of_an_image():
    gen = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8, generator=gen), dim=-1), F.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    logits = 10.0 * img @ txt.T
    expected = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5)))
    torch.testing.assert_close(clip_contrastive_loss(img, txt, 10.0), expected)
    ids = torch.tensor([0, 0, 1, 2, 3])
    masked = logits.clone()
    masked[0, 1] = masked[1, 0] = float("-inf")
    expected = 0.5 * (F.cross_entropy(masked, torch.arange(5)) + F.cross_entropy(masked.T, torch.arange(5)))
    torch.testing.assert_close(clip_contrastive_loss(img, txt, 10.0, ids), expected)


def test_hinge_triplet_loss_by_hand():
    img = unit([1, 0], [0, 1])
    txt = unit([1, 0], [0.6, 0.8])  # pair 1 scores 0.8; image 0 with caption 1 scores 0.6
    # margin 0.2: image 0 -> caption 1: 0.2 + 0.6 - 1 = -0.2 -> 0; image 1 -> caption 0: 0.2 + 0 - 0.8 -> 0
    # caption 1 -> image 0: 0.2 + 0.6 - 0.8 = 0.0; caption 0 -> image 1: 0.2 + 0 - 1 -> 0
    assert hinge_triplet_loss(img, txt, 0.2).item() == pytest.approx(0.0, abs=1e-6)
    # margin 0.5: image 0 -> c1: 0.1; caption 1 -> image 0: 0.3; others 0; hardest = sum here
    assert hinge_triplet_loss(img, txt, 0.5).item() == pytest.approx(0.4, abs=1e-6)
    assert hinge_triplet_loss(img, txt, 0.5, max_violation=False).item() == pytest.approx(0.4, abs=1e-6)
    # the same image id: no violation counted between its pairs
    assert hinge_triplet_loss(img, txt, 0.5, image_ids=torch.tensor([0, 0])).item() == 0.0


# ---- task ---------------------------------------------------------------------------------------------
BATCH = {"image": torch.rand(3, 3, 32, 32), "caption": ["a red circle", "a blue square on the left", "x"], "image_id": torch.arange(3)}


@pytest.mark.parametrize(("tune", "expected"), [("frozen", set()), ("projection", {"visual.proj", "text_projection"}), ("full", None)])
def test_tune_arms_train_what_they_say(tune, expected):
    task = RetrievalTask(tune=tune, image_size=32)
    names = {n for n, p in task.clip.named_parameters() if p.requires_grad}
    if expected is None:
        assert names == {n for n, _ in task.clip.named_parameters()}
    else:
        assert names == expected
    out = task.compute_loss(BATCH, "train")
    assert out["preds"].shape == (3, 2, 64) and torch.isfinite(out["loss"])
    assert (out["loss"].grad_fn is not None) == (tune != "frozen")


def test_tokenizer_is_open_clips_with_the_models_context():
    task = RetrievalTask(tune="frozen")
    tokens = task.tokenize(["a red circle in the top left"])
    assert tokens.shape == (1, 16) and tokens[0, 0].item() == 49406 and tokens.max().item() == 49407


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(BackboneError, match="'no_such_clip' is not an open_clip model name") as err:
        RetrievalTask(backbone="open_clip:no_such_clip")
    assert "\n" not in str(err.value)
    with pytest.raises(BackboneError, match="needs an open_clip model"):
        RetrievalTask(backbone="test_vit")
    with pytest.raises(ValueError, match="image_size 64 does not match the open_clip model's input size 32"):
        RetrievalTask(image_size=64)
    with pytest.raises(ValueError, match="tune must be"):
        RetrievalTask(tune="lora")
    with pytest.raises(BackboneError, match="config file not found"):
        RetrievalTask(backbone="open_clip:missing.json")


def test_cli_error_for_an_unknown_open_clip_name_is_one_line(capsys):
    line = cli_error_line(capsys, ["fit", "--model", "UniPTRetrievalTask", "--model.backbone", "open_clip:ViT-Q-99",
                                   "--data", "SyntheticCaptionsDataModule", "--trainer.fast_dev_run", "true"])
    assert "'ViT-Q-99' is not an open_clip model name" in line


def test_cli_error_for_a_caption_file_with_a_missing_image_names_the_row(capsys, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    csv = tmp_path / "caps.csv"
    csv.write_text("image,caption\na.png,a black square\nb.png,a missing picture\n")
    line = cli_error_line(capsys, ["fit", "--model", "RetrievalTask", "--data", "CaptionCSVDataModule",
                                   "--data.train_csv", str(csv), "--data.val_csv", str(csv), "--data.image_size", "32",
                                   "--trainer.fast_dev_run", "true"])
    assert "row 2" in line and "b.png" in line
