"""HST effect demos (slow): real training runs with fixed seeds, the compared arms side by side.

Classification: the shapes-pretrained tiny ViT moved to digits; HST must beat the linear probe by 5 points.
Segmentation: the same ViT on SyntheticMultiShapes masks; HST's pyramid decoder must beat a linear head on the
ViT's last layer by 0.05 mIoU.
The other arms (full FT, LoRA, UniPT, detached HST) are in ``scripts/hst_transfer.py`` and the method
README. Run with ``pytest -m slow -s -n 0`` to see the table.
"""

from __future__ import annotations

import pytest

from tests.helpers import load_script
from visionkit.utils.arm_report import markdown_table

TRANSFER = load_script("hst_transfer")

# the demo trains two arms for minutes: more room than the suite's 600 s per-test guard
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def by_arm(rows):
    return {r["arm"]: r for r in rows}


def test_classification_transfer_hst_beats_the_linear_probe(tmp_path):
    rows = TRANSFER.classification_transfer(tmp_path, arms=["linear", "hst"], epochs=5, seed=0, progress=False)
    print("\n" + markdown_table(rows, ["test_acc"]))
    arms = by_arm(rows)
    hst, linear = arms["hst"], arms["linear"]
    assert hst["test_acc"] >= linear["test_acc"] + 0.05
    assert (tmp_path / "classification.png").is_file() and (tmp_path / "classification.json").is_file()


def test_segmentation_transfer_hst_pyramid_beats_the_last_layer_linear_head(tmp_path):
    """500 images, batches of 8, 8 epochs (measured: HST 0.332 vs linear head 0.175 test mIoU on one torch
    thread, 0.310 vs 0.175 on two; the linear head
    predicts background almost everywhere). The full 15-epoch table is in the README."""
    rows = TRANSFER.segmentation_transfer(tmp_path, arms=["linear_last", "hst"], epochs=8, num_train=500, batch_size=8,
                                          seed=0, progress=False)
    print("\n" + markdown_table(rows, ["test_miou", "test_pixel_acc"]))
    arms = by_arm(rows)
    assert arms["hst"]["test_miou"] >= arms["linear_last"]["test_miou"] + 0.05
    assert (tmp_path / "segmentation.png").is_file() and (tmp_path / "segmentation.json").is_file()
