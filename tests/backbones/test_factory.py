"""``create_backbone``: unknown timm and open_clip names are one-line errors that suggest the closest
real names (a typo of ``resnet18`` suggests it first); pretrained weights offline point to ``checkpoint_path``."""

from __future__ import annotations

import re
import time

import pytest

from visionkit.backbones.factory import BackboneError, _close_timm_names, create_backbone


def _suggested(name: str) -> list[str]:
    with pytest.raises(BackboneError) as info:
        create_backbone(name, num_classes=3)
    message = str(info.value)
    assert f"'{name}' is not a timm model name" in message and "\n" not in message
    found = re.search(r"closest names: \[(.*)\]", message)
    assert found, message
    return [n.strip().strip("'") for n in found.group(1).split(",")]


@pytest.mark.parametrize(
    ("typo", "first"),
    [("resnet181", "resnet18"), ("Resnet18", "resnet18"), ("convnxt_tiny", "convnext_tiny"),
     ("test_resnett", "test_resnet"), ("resnet181.a1_in1k", "resnet18")],
)
def test_unknown_timm_name_suggests_the_closest_names_first(typo: str, first: str) -> None:
    names = _suggested(typo)
    assert names[0] == first, names
    assert len(names) <= 5


def test_suggestions_are_cached_and_cheap() -> None:
    _close_timm_names("resnet181")  # lists timm's names once
    start = time.perf_counter()
    for _ in range(5):
        _close_timm_names("vit_tiny_patch99")
    assert (time.perf_counter() - start) / 5 < 0.5  # about 10 ms per look-up on a shared 2-core CPU


def test_nothing_close_gives_no_hint() -> None:
    with pytest.raises(BackboneError) as info:
        create_backbone("qqqqqqqqqqqqqqqqqqqqqqq", num_classes=3)
    assert "closest names" not in str(info.value)


def test_unknown_backbone_and_offline_pretrained() -> None:
    with pytest.raises(BackboneError, match="'resnet_nope' is not a timm model name"):
        create_backbone("resnet_nope")
    with pytest.raises(BackboneError, match="checkpoint_path"):
        create_backbone("resnet18", pretrained=True)
    with pytest.raises(BackboneError, match="not an open_clip model name"):
        create_backbone("open_clip:NoSuchCLIP")


@pytest.mark.usefixtures("seeded_single_thread")
def test_unknown_timm_name_is_clear():
    with pytest.raises(BackboneError, match="'vit_tiny_patch99' is not a timm model name"):
        create_backbone("vit_tiny_patch99")
