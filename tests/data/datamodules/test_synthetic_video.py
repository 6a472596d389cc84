"""Generated video datamodules: disjoint digit pools, identical batches across worker counts, plots."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from visionkit.data.datamodules import MovingDigitsDataModule, SyntheticTALDataModule

matplotlib.use("Agg")


def test_splits_draw_from_disjoint_digit_images() -> None:
    dm = MovingDigitsDataModule(num_train=8, num_val=8, num_test=8)
    pools = [set(dm.dataset(s).digit_indices.tolist()) for s in ("train", "val", "test")]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    assert dm.num_classes == 10 and dm.in_channels == 3


@pytest.mark.parametrize("cls", [MovingDigitsDataModule, SyntheticTALDataModule])
def test_two_workers_give_the_same_batches_as_none(cls) -> None:
    def batches(workers: int) -> list[dict]:
        dm = cls(num_train=12, num_val=4, num_test=4, batch_size=4, num_workers=workers, seed=5)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        return list(loader)

    single, double = batches(0), batches(2)
    assert len(single) == len(double) == 3
    for a, b in zip(single, double, strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
        for key in ("label", "segments"):
            if key in a:
                values = a[key] if isinstance(a[key], list) else [a[key]]
                others = b[key] if isinstance(b[key], list) else [b[key]]
                assert all(torch.equal(x, y) for x, y in zip(values, others, strict=True))


def test_tal_batches_keep_each_sequence_segments_and_plot_a_timeline() -> None:
    dm = SyntheticTALDataModule(num_frames=32, max_length=8, num_train=4, num_val=4, num_test=4, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (4, 32, 3, 16, 16)
    assert isinstance(batch["segments"], list) and len(batch["segments"]) == 4
    assert [len(s) for s in batch["segments"]] == [len(lbl) for lbl in batch["segment_labels"]]
    sample = dm.dataset("val")[0]
    fig = dm.plot(sample, {"segments": sample["segments"] + 0.5, "labels": sample["segment_labels"]})
    assert len(fig.axes) == 9  # 8 frames + the timeline
    matplotlib.pyplot.close(fig)


def test_moving_digits_plot_is_a_frame_strip() -> None:
    dm = MovingDigitsDataModule(num_frames=4, num_train=2, num_val=2, num_test=2)
    fig = dm.plot(dm.dataset("train")[0], prediction=3)
    assert len(fig.axes) == 4 and "pred: 3" in fig._suptitle.get_text()
    matplotlib.pyplot.close(fig)
    assert np.isfinite(dm.dataset("train")[1]["video"].numpy()).all()
