"""UniPT effect demos (slow): real training runs with fixed seeds, every arm side by side.

Classification: the shapes-pretrained tiny ViT moved to digits; UniPT must beat the linear probe
while keeping its training memory a small fraction of full fine-tuning's. Retrieval: the
caption-pretrained tiny open_clip model moved to captions that name the position; UniPT must
beat the frozen zero-shot model clearly. Run with ``pytest -m slow -s`` to see the tables.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO
from visionkit.utils.arm_report import markdown_table


def _transfer_script():
    """``scripts/unipt_transfer.py`` as a module (the arm tables and the two demos live there)."""
    spec = importlib.util.spec_from_file_location("unipt_transfer", REPO / "scripts" / "unipt_transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRANSFER = _transfer_script()

# each demo trains several arms for minutes: more room than the suite's 600 s per-test guard
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def by_arm(rows):
    return {r["arm"]: r for r in rows}


def test_classification_transfer_unipt_beats_the_linear_probe(tmp_path):
    rows = TRANSFER.classification_transfer(epochs=15, seed=0, out_dir=tmp_path, progress=False)
    print("\n" + markdown_table(rows, ["test_acc"]))
    arms = by_arm(rows)
    unipt, linear, full = arms["unipt"], arms["linear"], arms["full"]
    assert unipt["test_acc"] >= linear["test_acc"] + 0.05
    assert unipt["activation_bytes_ratio"] <= 0.30 and unipt["total_bytes_ratio"] <= 0.30
    assert arms["lora"]["activation_bytes_ratio"] >= 0.5  # LoRA still back-propagates through every block
    assert unipt["trainable_params"] < 0.2 * full["trainable_params"]
    assert (tmp_path / "classification.png").is_file() and (tmp_path / "classification.json").is_file()


def test_retrieval_transfer_unipt_beats_zero_shot(tmp_path):
    rows = TRANSFER.retrieval_transfer(epochs=30, seed=0, out_dir=tmp_path, progress=False)
    print("\n" + markdown_table(rows, ["test_i2t_r1", "test_t2i_r1", "test_rsum"]))
    arms = by_arm(rows)
    unipt, zero = arms["unipt"], arms["zero_shot"]
    assert unipt["test_i2t_r1"] >= zero["test_i2t_r1"] + 10.0
    assert unipt["test_t2i_r1"] >= zero["test_t2i_r1"] + 10.0
    assert unipt["test_rsum"] >= zero["test_rsum"] + 60.0
    assert unipt["activation_bytes_ratio"] <= 0.5
    assert (tmp_path / "retrieval.png").is_file()
