"""The tiny pretrained backbones in assets/: small, loadable offline, and actually trained."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from visionkit.backbones.assets import ASSETS_DIR, asset_metadata, load_asset
from visionkit.core.weights import WeightsError
from visionkit.data.datamodules import SyntheticShapesDataModule

ASSETS = sorted(p.stem for p in ASSETS_DIR.glob("*.safetensors"))


def test_assets_are_shipped() -> None:
    assert {"shapes_test_resnet", "shapes_test_vit"} <= set(ASSETS)


@pytest.mark.parametrize("name", ASSETS)
def test_asset_is_small_and_reproduces_its_recorded_accuracy(name: str) -> None:
    assert (ASSETS_DIR / f"{name}.safetensors").stat().st_size <= 10 * 1024 * 1024
    meta = asset_metadata(name)
    model = load_asset(name).eval()
    # the val split the asset was selected on (configs/pretrain/*.yaml: num_val 1000, seed 0)
    dm = SyntheticShapesDataModule(num_classes=meta["num_classes"], num_val=1000, image_size=meta["image_size"])
    correct = total = 0
    with torch.no_grad():
        for batch in DataLoader(dm.dataset("val"), batch_size=250):
            correct += (model(batch["image"]).argmax(-1) == batch["label"]).sum().item()
            total += len(batch["label"])
    assert correct / total == pytest.approx(float(meta["val_acc"]), abs=0.002)
    assert correct / total >= 2.5 / meta["num_classes"]  # trained: far above chance


def test_new_head_for_transfer() -> None:
    model = load_asset("shapes_test_resnet", num_classes=10)
    assert model.fc.out_features == 10
    with pytest.raises(WeightsError, match="not found"):
        load_asset("no_such_asset")
