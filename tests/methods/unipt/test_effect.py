"""UniPT effect demos (slow): real training runs with fixed seeds, the compared arms side by side.

Classification: the shapes-pretrained tiny ViT moved to digits; UniPT must beat the linear probe
while keeping its training memory a small fraction of full fine-tuning's. Retrieval: the
caption-pretrained tiny open_clip model moved to captions that name the position; UniPT must
beat the frozen zero-shot model clearly. Only the arms an assertion compares are trained; every arm is in
``scripts/unipt_transfer.py`` and the method README. Run with ``pytest -m slow -s -n 0`` to see the tables.
"""

from __future__ import annotations

import pytest

from tests.helpers import load_script
from visionkit.core.arms import arm_builders, arm_memory
from visionkit.data.datamodules import DigitsDataModule
from visionkit.utils.arm_report import markdown_table

TRANSFER = load_script("unipt_transfer")

# each demo trains several arms for minutes: more room than the suite's 600 s per-test guard
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def by_arm(rows):
    return {r["arm"]: r for r in rows}


def test_classification_transfer_unipt_beats_the_linear_probe(tmp_path):
    rows = TRANSFER.classification_transfer(tmp_path, arms=["linear", "unipt"], epochs=15, seed=0, progress=False)
    print("\n" + markdown_table(rows, ["test_acc"]))
    arms = by_arm(rows)
    unipt, linear = arms["unipt"], arms["linear"]
    assert unipt["test_acc"] >= linear["test_acc"] + 0.05
    assert unipt["activation_bytes_ratio"] <= 0.30 and unipt["total_bytes_ratio"] <= 0.30
    # the other arms' memory and size, measured on the same batch without training them
    builders = arm_builders(TRANSFER.CLASSIFICATION_ARMS, ["full", "lora"], asset="shapes_test_vit", num_classes=10, image_size=32)
    data = DigitsDataModule(num_train=500, num_val=300, num_test=297, batch_size=64, image_size=32, seed=0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    full, lora = builders["full"](), builders["lora"]()
    lora_ratio = arm_memory(lora, batch)["activation_bytes"] / arm_memory(full, batch)["activation_bytes"]
    assert lora_ratio >= 0.5  # LoRA still back-propagates through every block
    assert unipt["trainable_params"] < 0.2 * full.parameter_report().trainable
    assert (tmp_path / "classification.png").is_file() and (tmp_path / "classification.json").is_file()


def test_retrieval_transfer_unipt_beats_zero_shot(tmp_path):
    rows = TRANSFER.retrieval_transfer(tmp_path, arms=["zero_shot", "unipt"], epochs=30, seed=0, progress=False)
    print("\n" + markdown_table(rows, ["test_i2t_r1", "test_t2i_r1", "test_rsum"]))
    arms = by_arm(rows)
    unipt, zero = arms["unipt"], arms["zero_shot"]
    assert unipt["test_i2t_r1"] >= zero["test_i2t_r1"] + 10.0
    assert unipt["test_t2i_r1"] >= zero["test_t2i_r1"] + 10.0
    assert unipt["test_rsum"] >= zero["test_rsum"] + 60.0
    assert unipt["activation_bytes_ratio"] <= 0.5
    assert (tmp_path / "retrieval.png").is_file()
