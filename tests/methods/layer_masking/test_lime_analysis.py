"""LIME masking analysis: the adapter agrees with stock LIME, a planted signal is ranked first, the
metrics, and the entry point ``scripts/lime_masking_analysis.py`` (outputs and bad input)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import REPO
from visionkit.methods.layer_masking import LayerMaskingError, convert
from visionkit.methods.layer_masking.lime_analysis import (
    MaskedClassifier,
    coverage,
    explain,
    explainer_class,
    jaccard,
    object_segment_count,
    relabel_segments,
    segment_image,
    top_segments,
)
from visionkit.methods.layer_masking.protocols import GREY

sys.path.insert(0, str(REPO / "scripts"))
import lime_masking_analysis as script  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def tiny_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))
    return convert(net.eval())


def random_image(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (size, size, 3))


class Recorder:
    """Wraps a classifier_fn and records what LIME passes to it."""

    def __init__(self, fn: MaskedClassifier) -> None:
        self.fn, self.keeps, self.probs = fn, [], []

    def __call__(self, images: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        if keep is None:  # stock LIME, NaN sentinel: recover the keep masks
            self.keeps.append(~np.isnan(images).any(-1))
        else:
            self.keeps.append(np.asarray(keep, dtype=bool))
        out = self.fn(images, keep) if keep is not None else self.fn(images)
        self.probs.append(out)
        return out


def test_adapter_matches_stock_lime_matrix_masks_calls_and_sentinel_route() -> None:
    """Same seed -> same perturbation matrix as stock LIME; keep = union of the 'on' segments;
    row 0 unmasked; ceil(n/b) calls; stock LIME with a NaN sentinel gives the same probabilities."""
    from lime.lime_image import LimeImageExplainer

    model, image = tiny_cnn(), random_image()
    segments = segment_image(image, "grid", grid=8)
    n, samples, batch = int(segments.max()) + 1, 50, 16
    kwargs = dict(labels=(1,), top_labels=None, num_features=n, num_samples=samples, batch_size=batch,
                  segmentation_fn=lambda _img: segments, random_seed=0)
    stock_fn = Recorder(MaskedClassifier(model, "layer"))
    stock = LimeImageExplainer(random_state=0).explain_instance(image, stock_fn, hide_color=np.nan, **kwargs)
    ours_fn = Recorder(MaskedClassifier(model, "layer"))
    explainer = explainer_class()(random_state=0)
    ours = explainer.explain_instance(image, ours_fn, hide_color=0, **kwargs)
    assert len(stock_fn.keeps) == len(ours_fn.keeps) == math.ceil(samples / batch)
    stock_keep, our_keep = np.concatenate(stock_fn.keeps), np.concatenate(ours_fn.keeps)
    assert np.array_equal(stock_keep, our_keep)
    assert np.array_equal(our_keep, explainer.last_data[:, segments].astype(bool))
    assert explainer.last_data[0].all() and our_keep[0].all()
    assert 0.3 < explainer.last_data[1:].mean() < 0.7
    assert np.allclose(np.concatenate(stock_fn.probs), np.concatenate(ours_fn.probs), atol=1e-6)
    with torch.no_grad():
        plain = model(torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]).softmax(-1).numpy()
    assert np.allclose(ours_fn.probs[0][0], plain[0], atol=1e-6)
    assert dict(stock.local_exp[1]).keys() == dict(ours.local_exp[1]).keys()
    for (i, w), (j, v) in zip(sorted(stock.local_exp[1]), sorted(ours.local_exp[1]), strict=True):
        assert i == j and abs(w - v) < 1e-6


def test_painting_fill_matches_stock_lime_hide_color() -> None:
    """The grey fill through the keep-mask explainer equals stock LIME's own hide_color painting."""
    from lime.lime_image import LimeImageExplainer

    model, image = tiny_cnn(), random_image(seed=1)
    segments = segment_image(image, "grid", grid=8)
    n = int(segments.max()) + 1
    plain = MaskedClassifier(model, "grey")
    stock = LimeImageExplainer(random_state=3).explain_instance(
        image, lambda imgs: plain(imgs, np.ones(imgs.shape[:3], dtype=bool)), labels=(2,), top_labels=None,
        hide_color=GREY, num_features=n, num_samples=40, batch_size=40, segmentation_fn=lambda _img: segments,
        random_seed=0)
    ours = explain(image, segments, plain, 2, num_samples=40, batch_size=40, seed=3)
    weights = np.zeros(n)
    for i, w in stock.local_exp[2]:
        weights[i] = w
    assert np.allclose(weights, ours["weights"], atol=1e-6)


def test_segments_are_relabelled_to_0_n_and_checked() -> None:
    from skimage.segmentation import slic

    image = random_image(48)
    raw = slic(image, n_segments=20, start_label=1, channel_axis=-1)
    assert raw.min() == 1
    relabelled = relabel_segments(raw)
    n = len(np.unique(raw))
    assert relabelled.min() == 0 and relabelled.max() == n - 1 and len(np.unique(relabelled)) == n
    assert all(len(np.unique(relabelled[raw == r])) == 1 for r in np.unique(raw))  # same partition
    for method in ("slic", "quickshift", "grid"):
        seg = segment_image(image, method, n_segments=20, grid=8)
        assert seg.min() == 0 and seg.max() == len(np.unique(seg)) - 1
    with pytest.raises(LayerMaskingError, match=r"0\.\.n-1"):
        explain(image, raw, MaskedClassifier(tiny_cnn(), "layer"), 0, num_samples=10, batch_size=10)


def redness_model() -> nn.Module:
    """Class 1's logit is 8x the masked mean of relu(r - (g + b) / 2): a pure redness detector."""
    conv = nn.Conv2d(3, 1, 1)
    fc = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))
        conv.bias.zero_()
        fc.weight.copy_(torch.tensor([[-4.0], [4.0]]))
        fc.bias.zero_()
    return convert(nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval())


def planted(red_cell: int | None, size: int = 32, cell: int = 8) -> np.ndarray:
    image = 0.5 + 0.03 * np.random.default_rng(0).standard_normal((size, size, 3))
    if red_cell is not None:
        r, c = divmod(red_cell, size // cell)
        image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = (0.9, 0.1, 0.1)
    return image.clip(0, 1)


def test_planted_signal_is_ranked_first_and_the_rank_follows_it() -> None:
    model = redness_model()
    segments = segment_image(planted(None), "grid", grid=8)
    fn = MaskedClassifier(model, "layer")
    for cell in (5, 10):
        weights = explain(planted(cell), segments, fn, 1, num_samples=300, batch_size=300)["weights"]
        assert int(np.argmax(weights)) == cell and weights[cell] > 0
        others = np.delete(weights, cell)
        assert weights[cell] > 5 * np.abs(others).max()
        assert others.mean() < 0  # the masked mean: more visible background dilutes the redness
    # sensitivity: paint the planted cell grey and its weight vanishes, it is no longer first
    weights = explain(planted(None), segments, fn, 1, num_samples=300, batch_size=300)["weights"]
    assert int(np.argmax(weights)) != 5 and abs(weights[5]) < 1e-3


def test_metrics() -> None:
    segments = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 4, 0), 4, 1)  # 16 cells of 4x4 px
    mask = np.zeros((16, 16), dtype=np.int64)
    mask[0:8, 0:8] = 1  # cells 0, 1, 4, 5
    g = np.bincount(segments.ravel(), weights=(mask - mask.mean()).ravel())
    assert coverage(g * 3.0, segments, mask) == pytest.approx(1.0)
    assert coverage(-g, segments, mask) == pytest.approx(-1.0)
    assert object_segment_count(segments, mask) == 4
    weights = np.zeros(16)
    weights[[0, 1, 4, 5]] = [4, 3, 2, 1]
    top = top_segments(weights, 4)
    assert list(top) == [0, 1, 4, 5]
    assert jaccard(segments, top, mask) == pytest.approx(1.0)
    assert jaccard(segments, [0, 2], mask) == pytest.approx(16 / (64 + 16))


# ---- the entry point -------------------------------------------------------------------------
SMALL = ["--num-images", "2", "--num-samples", "40", "--batch-size", "40", "--fills", "layer", "grey", "--no-progress"]


def test_script_writes_panels_json_and_never_overwrites(tmp_path, capsys) -> None:
    out = tmp_path / "lime"
    assert script.main([*SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "coverage" in printed and "layer" in printed and "grey" in printed
    run0 = out / "run_000"
    panels = sorted((run0 / "panels").glob("*.png"))
    assert len(panels) == 2
    data = json.loads((run0 / "explanations.json").read_text())
    first = data["images"][0]
    assert set(first["fills"]) == {"layer", "grey"}
    assert len(first["fills"]["layer"]["weights"]) == first["n_segments"] and first["fills"]["layer"]["coverage"] is not None
    assert first["fills"]["layer"]["classifier_calls"] == 1
    summary = json.loads((run0 / "summary.json").read_text())["summary"]
    assert summary["layer"]["images"] == 2 and summary["grey"]["win_pct"] is not None
    before = {p: p.read_bytes() for p in run0.rglob("*") if p.is_file()}
    assert script.main([*SMALL, "--out", str(out), "skimage:astronaut"]) == 0
    run1 = json.loads((out / "run_001" / "explanations.json").read_text())
    assert run1["images"][0]["name"] == "skimage_astronaut" and run1["images"][0]["fills"]["grey"]["coverage"] is None
    assert {p: p.read_bytes() for p in run0.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("inputs", "words"),
    [(["missing.png"], ["missing.png", "does not exist"]), (["bad.png"], ["unreadable image", "bad.png"]),
     (["skimage:no_such_photo"], ["skimage:no_such_photo"]), (["empty_dir"], ["empty_dir", "holds no images"])],
)
def test_script_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, inputs, words) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "empty_dir").mkdir()
    out = tmp_path / "lime"
    code = script.main([*SMALL, "--out", str(out), *[str(tmp_path / i) if not i.startswith("skimage") else i for i in inputs]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("lime_masking_analysis: error:")
    assert all(w in err[0] for w in words), err[0]
    assert not out.exists()


def test_script_exit_code_and_existing_out_file(tmp_path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lime_masking_analysis.py"), *SMALL, "--out", str(target)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "results.txt" in proc.stderr
    assert target.read_text() == "keep me"
