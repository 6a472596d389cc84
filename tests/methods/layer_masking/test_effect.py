"""Slow effect demos: layer masking vs grey/black fills on the shipped trained tiny ResNet, and the
LIME entry point's default run (``pytest -m slow -s -n 0`` prints the measured curves)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO
from visionkit.backbones.assets import load_asset
from visionkit.data.datamodules.synthetic_shapes import SyntheticShapesDataModule
from visionkit.methods.layer_masking import convert
from visionkit.methods.layer_masking.protocols import MaskingProtocols

FRACTIONS = [0.0, 0.2, 0.4, 0.6]
FILLS = ["layer", "grey", "black"]


@pytest.fixture(scope="module")
def curves() -> dict[str, dict]:
    """Removal curves (background cells and any cells) and leakage on 500 validation images."""
    torch.set_num_threads(1)
    model = convert(load_asset("shapes_test_resnet").eval())
    data = SyntheticShapesDataModule(num_classes=8, num_val=500, batch_size=250)
    data.setup("validate")
    out = {}
    for region in ("background", "any"):
        protocols = MaskingProtocols(FILLS, FRACTIONS, num_classes=8, patch=4, region=region, leakage=region == "any")
        for i, batch in enumerate(data.val_dataloader()):
            protocols.update(model, batch["image"], batch["label"], batch["mask"], i)
        out[region] = protocols.compute()
    return out


def _at(result: dict, fill: str, fraction: float) -> dict:
    return next(r for r in result["removal"] if r["fill"] == fill and r["fraction"] == fraction)


@pytest.mark.slow
@pytest.mark.parametrize("region", ["background", "any"])
def test_layer_masking_keeps_accuracy_and_entropy_under_random_removal(curves, region) -> None:
    result = curves[region]
    print(f"\nrandom 4 px cells removed ({region}): fill, fraction, accuracy, class entropy (nats)")
    for r in result["removal"]:
        print(f"  {r['fill']:6s} {r['fraction']:.1f}  acc {r['accuracy']:.3f}  H {r['entropy']:.3f}")
    layer, clean = _at(result, "layer", 0.4), _at(result, "layer", 0.0)
    for fill in ("grey", "black"):
        other = _at(result, fill, 0.4)
        assert layer["accuracy"] >= other["accuracy"] + 0.10, (fill, layer, other)
        assert layer["entropy"] >= other["entropy"] + 0.10, (fill, layer, other)
    assert layer["entropy"] >= 0.95 * clean["entropy"]


@pytest.mark.slow
def test_layer_masking_leaks_far_less_mask_shape_than_grey(curves) -> None:
    rows = {r["fill"]: r for r in curves["any"]["leakage"]}
    print("\nobject removed, images correct when clean: fill, exact-shape hole acc, bbox hole acc, leak")
    for fill, r in rows.items():
        print(f"  {fill:6s} {r['exact_hole_acc']:.3f} {r['bbox_hole_acc']:.3f} {r['leak']:+.3f} (n={r['n']})")
    assert rows["layer"]["n"] >= 400
    assert rows["grey"]["leak"] - rows["layer"]["leak"] >= 0.30
    assert rows["black"]["leak"] - rows["layer"]["leak"] >= 0.30


@pytest.mark.slow
def test_lime_entry_point_default_run_is_offline_and_under_two_minutes(tmp_path) -> None:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lime_masking_analysis.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"\nLIME default run: {seconds:.1f} s wall\n{proc.stdout}")
    run = tmp_path / "outputs" / "lime_masking" / "run_000"
    assert len(list((run / "panels").glob("*.png"))) == 8
    data = json.loads((run / "explanations.json").read_text())
    assert {len(im["fills"]) for im in data["images"]} == {4}
    assert "LIME" in proc.stderr  # the progress bar
    assert seconds <= 120
