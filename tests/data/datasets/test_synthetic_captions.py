"""``SyntheticCaptionedShapes``: items are pure functions of seed and index, and captions state the
drawn colour, shape and position."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from tests.helpers import error_of
from visionkit.data.datasets import SHAPES, SyntheticCaptionedShapes
from visionkit.data.datasets.synthetic_captions import COLOUR_NAMES, COLOURS, POSITIONS

POSITION_WORDS = ("top", "bottom", "left", "right", "centre")


def parse(caption: str) -> tuple[str | None, str | None, str | None]:
    """(colour, shape, position) named in ``caption`` (the longest matching position phrase)."""

    def find(names: list[str]) -> str | None:
        found = [n for n in names if re.search(rf"\b{n}\b", caption)]
        return max(found, key=len) if found else None

    return find(COLOUR_NAMES), find(SHAPES), find(POSITIONS)


def object_mask(item: dict[str, Any]) -> torch.Tensor:
    """Pixels painted in the item's exact palette colour."""
    rgb = torch.tensor(COLOURS[COLOUR_NAMES[int(item["colour"])]], dtype=torch.float32)
    return (item["image"] - rgb[:, None, None]).abs().amax(0) < 1e-6


# --- SyntheticCaptionedShapes ----------------------------------------------------------------------


def test_synthetic_items_are_pure_functions_of_seed_and_index() -> None:
    a, b = SyntheticCaptionedShapes(20, seed=3), SyntheticCaptionedShapes(20, seed=3)
    for i in (0, 9, 19):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and x["caption"] == y["caption"]
        for key in ("image_id", "shape", "colour", "position"):
            assert x[key].dtype == torch.int64 and x[key].ndim == 0 and x[key] == y[key]
        assert x["image_id"] == i
        assert x["image"].shape == (3, 32, 32) and x["image"].dtype == torch.float32
        assert 0 <= x["image"].min() and x["image"].max() <= 1
    assert not torch.equal(a[0]["image"], SyntheticCaptionedShapes(20, seed=4)[0]["image"])
    assert a.num_images == len(a) == 20 and a.classes == []
    # the lazily computed captions are the items' captions
    assert a.captions == [a[i]["caption"] for i in range(20)]
    # templates change the wording only: same images and attributes
    varied = SyntheticCaptionedShapes(20, seed=3, templates="varied")
    assert torch.equal(varied[5]["image"], a[5]["image"]) and varied.captions != a.captions


@pytest.mark.parametrize("templates", ["plain", "varied"])
def test_caption_states_the_item_attributes(templates: str) -> None:
    data = SyntheticCaptionedShapes(60, image_size=16, seed=1, templates=templates)
    seen = set()
    for i in range(len(data)):
        item = data[i]
        colour, shape, position = (int(item[k]) for k in ("colour", "shape", "position"))
        expected = COLOUR_NAMES[colour], SHAPES[shape], POSITIONS[position]
        assert parse(item["caption"]) == expected, item["caption"]
        seen.add(item["caption"].replace(expected[0], "C").replace(expected[1], "S"))
    assert {int(data[i]["colour"]) for i in range(len(data))} == set(range(8))
    if templates == "plain":
        item = data[0]
        colour, shape, _ = parse(item["caption"])
        assert item["caption"].startswith(f"{'an' if colour == 'orange' else 'a'} {colour} {shape} ")
    else:  # several paraphrases are in use
        assert len({re.sub(r"top|bottom|left|right|centre", "P", s) for s in seen}) >= 4


def test_positions_land_in_the_named_grid_cell() -> None:
    size = 33
    data = SyntheticCaptionedShapes(90, image_size=size, seed=2)
    cell = size / 3
    positions = set()
    for i in range(len(data)):
        item = data[i]
        mask = object_mask(item)
        assert mask.sum() >= 8
        ys, xs = mask.nonzero(as_tuple=True)
        cy, cx = ys.float().mean().item() + 0.5, xs.float().mean().item() + 0.5
        row, col = divmod(int(item["position"]), 3)
        assert col * cell < cx < (col + 1) * cell and row * cell < cy < (row + 1) * cell, (i, cx, cy)
        # the object stands out: background pixels are far from the palette colour
        rgb = torch.tensor(COLOURS[COLOUR_NAMES[int(item["colour"])]])
        distance = (item["image"][:, ~mask] - rgb[:, None]).norm(dim=0)
        assert torch.quantile(distance, 0.05) > 0.3
        positions.add(int(item["position"]))
    assert positions == set(range(9))


@pytest.mark.parametrize("templates", ["plain", "varied"])
def test_describe_selects_the_stated_attributes(templates: str) -> None:
    no_position = SyntheticCaptionedShapes(40, seed=0, describe=["colour", "shape"], templates=templates)
    for caption in no_position.captions:
        assert not any(re.search(rf"\b{w}\b", caption) for w in POSITION_WORDS), caption
    for i in range(5):
        item = no_position[i]
        assert parse(item["caption"]) == (COLOUR_NAMES[int(item["colour"])], SHAPES[int(item["shape"])], None)
    # unstated positions are still random; the order of describe does not matter
    assert len({int(no_position[i]["position"]) for i in range(20)}) > 3
    swapped = SyntheticCaptionedShapes(40, seed=0, describe=["shape", "colour"], templates=templates)
    assert swapped.captions == no_position.captions
    only_position = SyntheticCaptionedShapes(40, seed=0, describe=["position"], templates=templates)
    for i, caption in enumerate(only_position.captions):
        assert parse(caption) == (None, None, POSITIONS[int(only_position[i]["position"])]), caption


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"describe": ["colour", "size"]}, "unknown describe entry 'size'"),
        ({"describe": []}, "describe must be a non-empty list"),
        ({"describe": "colour"}, "describe must be a non-empty list"),
        ({"image_size": 8}, "image_size must be at least 16"),
        ({"num_shapes": 9}, "num_shapes must be between 1 and 8"),
        ({"num_colours": 0}, "num_colours must be between 1 and 8"),
        ({"templates": "fancy"}, "templates must be one of"),
    ],
)
def test_synthetic_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        SyntheticCaptionedShapes(10, **kwargs)
    error_of(exc)


def test_num_shapes_and_colours_limit_the_draws() -> None:
    data = SyntheticCaptionedShapes(40, image_size=16, num_shapes=2, num_colours=3)
    assert {int(data[i]["shape"]) for i in range(40)} == {0, 1}
    assert {int(data[i]["colour"]) for i in range(40)} == {0, 1, 2}
