"""The ToCo demo's pieces: the class-tinted gratings set held in memory, the naive baselines (hand case) and the
step benchmark's keys."""

from __future__ import annotations

import pytest
import torch

from tests.methods.toco import TINY_TASK
from visionkit.data.datasets.synthetic_shapes import CLASS_COLOURS, SyntheticMultiShapes
from visionkit.methods.toco import ToCoTask
from visionkit.methods.toco.demo import InMemory, benchmark_step, naive_baselines, shapes_data

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def test_shapes_data_is_class_tinted_on_gratings_and_held_in_memory() -> None:
    data = shapes_data(num_classes=3, max_objects=2, num_train=6, num_test=4, batch_size=2, seed=0)
    train, test = data.dataset("train"), data.dataset("test")
    assert isinstance(train, InMemory) and len(train) == 6 and data.dataset("val") is test
    assert train[0] is train[0]  # served from memory, not regenerated
    for i in range(len(train)):
        item = train[i]
        for c in item["label"].nonzero().flatten().tolist():
            colour = item["image"][:, item["mask"] == c + 1].mean(1)
            assert (colour - torch.tensor(CLASS_COLOURS[c])).abs().max() < 0.3  # the tint +- N(0, 0.08) jitter
        background = item["image"][:, item["mask"] == 0]
        assert abs(float(background.mean()) - 0.5) < 0.1  # mid grey with gratings
    plain = SyntheticMultiShapes(3, num_classes=3, max_objects=2)  # the defaults draw the same items as before
    assert not plain.class_colours and plain.background == "texture"
    with pytest.raises(ValueError, match="background must be one of"):
        SyntheticMultiShapes(3, num_classes=3, background="stripes")


def test_naive_baselines_hand_case() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 2]])  # 5 bg, 2 of class 1, 1 of class 2
    label = torch.tensor([1.0, 1.0])
    out = naive_baselines([{"mask": mask, "label": label}], num_classes=2)
    # all background: IoU_bg 5/8, classes 1 and 2 have 0: mean 5/24
    assert out["all_background"] == pytest.approx(5 / 24)
    # every pixel class 1 (the first present): IoU_1 = 2/8, bg and class 2 0: mean 1/12
    assert out["label_broadcast"] == pytest.approx(1 / 12)


def test_benchmark_step_times_every_part() -> None:
    task = ToCoTask(**{**TINY_TASK, "seg_after": 10**9, "contrast_after": 10**9})
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, 32, 32, generator=gen), "label": torch.tensor([[1.0, 0, 0], [0, 1, 1]])}
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    out = benchmark_step(task, batch, repeats=1)
    assert set(out) == {"plain", "toco", "cam", "pseudo_labels", "ctc_views", "ratio"}
    assert all(v > 0 for v in out.values())
    assert (task.hparams.seg_after, task.hparams.contrast_after) == (10**9, 10**9)  # restored
    for name, p in task.named_parameters():  # the steps' updates (and the teacher's EMA) are undone
        assert torch.equal(p.detach(), before[name]), name
