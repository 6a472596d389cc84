"""``image_text_recall`` and ``ImageTextRecall``: recall@k by hand, batch accumulation, rsum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionkit.metrics import ImageTextRecall, image_text_recall


def unit(*rows) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


# ---- metric -----------------------------------------------------------------------------------------------
def test_recall_by_hand_with_two_captions_for_one_image():
    # images: 0 (captions p0, p1), 1 (p2), 2 (p3); image embeddings repeat per caption
    img = unit([1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1])
    txt = unit([0.9, 0.1, 0], [0.1, 0.9, 0], [0.2, 0.8, 0], [0, 0, 1])
    ids = torch.tensor([0, 0, 1, 2])
    r = image_text_recall(img, txt, ids, ks=(1, 2))
    # i2t: image 0 -> p0 (own), image 1 -> p1 (0.9 beats p2's 0.8: wrong), image 2 -> p3: 2 of 3
    assert r["i2t_r1"] == pytest.approx(200 / 3)
    # t2i: p0 -> 0 ok, p1 -> 1 wrong, p2 -> 1 ok, p3 -> 2 ok: 3 of 4; at k=2 p1 finds image 0
    assert r["t2i_r1"] == pytest.approx(75.0) and r["t2i_r2"] == pytest.approx(100.0)
    assert r["i2t_r2"] == pytest.approx(100.0)


def test_recall_metric_accumulates_batches_and_sums_for_rsum():
    img = unit([1, 0], [0, 1], [1, 1], [1, -1])
    txt = unit([1, 0.1], [0.1, 1], [1, 0.9], [1, -0.8])
    ids = torch.arange(4)
    metric = ImageTextRecall((1, 5, 10), "both")
    metric.update(torch.stack([img[:2], txt[:2]], 1), ids[:2])
    metric.update(torch.stack([img[2:], txt[2:]], 1), ids[2:])
    direct = image_text_recall(img, txt, ids)
    assert metric.compute().item() == pytest.approx(sum(direct.values()))
    single = ImageTextRecall(1, "t2i")
    single.update(torch.stack([img, txt], 1), ids)
    assert single.compute().item() == pytest.approx(direct["t2i_r1"])
    with pytest.raises(ValueError, match=r"preds must be \(B, 2, E\)"):
        single.update(img, ids)
    with pytest.raises(ValueError, match="direction"):
        ImageTextRecall(1, "up")
