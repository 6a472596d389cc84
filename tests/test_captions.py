"""Image-text data: generated captioned shapes, caption CSV and Karpathy JSON readers, their errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from visionkit.data import DatasetNotFoundError, ImageReadError
from visionkit.data.datamodules import (
    CaptionCSVDataModule,
    CaptionDataModule,
    KarpathyDataModule,
    SyntheticCaptionsDataModule,
)
from visionkit.data.datasets import SHAPES, CaptionCSV, KarpathyCaptions, SyntheticCaptionedShapes
from visionkit.data.datasets.synthetic_captions import COLOUR_NAMES, COLOURS, POSITIONS
from visionkit.data.errors import CaptionFileError

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


def write_png(path: Path, value: int, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def write_csv(
    path: Path, rows: list[list[str]], header: tuple[str, ...] = ("image", "caption"), delimiter: str = ","
) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def karpathy_entries() -> list[dict[str, Any]]:
    """Six images: two train, one restval, two val, one test; image ``i`` has ``2 + i % 2`` captions."""
    splits = ["train", "restval", "val", "test", "train", "val"]
    return [
        {
            "filepath": "train2014" if split in ("train", "restval") else "val2014",
            "filename": f"img{i}.png",
            "split": split,
            "sentences": [{"raw": f" image {i} caption {j} ", "tokens": []} for j in range(2 + i % 2)],
            "imgid": i,
        }
        for i, split in enumerate(splits)
    ]


def write_karpathy(root: Path, entries: list[dict[str, Any]] | None = None, images: bool = True) -> Path:
    entries = karpathy_entries() if entries is None else entries
    root.mkdir(parents=True, exist_ok=True)
    if images:
        for i, e in enumerate(entries):
            if isinstance(e.get("filename"), str):
                write_png(root / "images" / e["filepath"] / e["filename"], 20 * i)
    (root / "dataset.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root / "dataset.json"


def error_of(exc: pytest.ExceptionInfo) -> str:
    """The exception's message, checked to be one line."""
    message = str(exc.value)
    assert "\n" not in message, message
    return message


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


def test_synthetic_datamodule_splits_and_collate() -> None:
    dm = SyntheticCaptionsDataModule(num_train=16, num_val=8, num_test=8, batch_size=4, image_size=16)
    assert isinstance(dm, CaptionDataModule) and dm.num_classes == 0 and dm.task == "retrieval"
    dm.setup("fit")
    train, val, test = dm.dataset("train"), dm.dataset("val"), dm.dataset("test")
    assert len(train) == 16 and len(val) == 8 and len(test) == 8
    assert not any(torch.equal(train[i]["image"], val[i]["image"]) for i in range(8))
    assert not any(torch.equal(test[i]["image"], val[i]["image"]) for i in range(8))
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4
    assert all(isinstance(c, str) for c in batch["caption"])
    assert batch["image_id"].dtype == torch.int64 and batch["image_id"].shape == (4,)
    assert batch["image"].shape == (4, 3, 16, 16)
    assert batch["caption"] == [train.captions[int(i)] for i in batch["image_id"]]
    # val keeps the dataset order
    ids = torch.cat([b["image_id"] for b in dm.val_dataloader()])
    assert ids.tolist() == list(range(8))
    with pytest.raises(ValueError, match="unknown describe entry"):
        SyntheticCaptionsDataModule(describe=["colour", "texture"])


# --- CaptionCSV ------------------------------------------------------------------------------------


def test_caption_csv_groups_images_and_resolves_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_png(data / "a.png", 10)
    write_png(data / "sub" / "b.png", 200)
    absolute = write_png(tmp_path / "elsewhere" / "c.png", 120)
    rows = [
        ["a.png", "a dark square"],
        ["sub/b.png", "a bright, light square"],  # the comma is quoted by the writer
        ["sub/../a.png", "  another caption of a  "],
        [str(absolute), "grey"],
    ]
    ds = CaptionCSV(write_csv(data / "captions.csv", rows), image_size=6)
    assert len(ds) == 4 and ds.num_images == 3 and ds.classes == []
    assert ds.image_ids == [0, 1, 0, 2]
    assert ds.captions == ["a dark square", "a bright, light square", "another caption of a", "grey"]
    item = ds[1]
    assert item["image"].shape == (3, 6, 6) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], torch.full((3, 6, 6), 200 / 255))
    assert item["caption"] == "a bright, light square" and item["image_id"].dtype == torch.int64
    assert int(ds[2]["image_id"]) == 0 and int(ds[3]["image_id"]) == 2
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["caption"] == ds.captions and batch["image_id"].tolist() == [0, 1, 0, 2]
    assert batch["image_id"].dtype == torch.int64


def test_caption_csv_columns_delimiter_and_image_root(tmp_path: Path) -> None:
    write_png(tmp_path / "imgs" / "x.png", 50)
    rows = [["1", "x.png", "first"], [], ["2", "x.png", "second"]]
    path = write_csv(tmp_path / "caps.tsv", rows, header=("id", " file ", "text"), delimiter="\t")
    ds = CaptionCSV(path, tmp_path / "imgs", image_column="file", caption_column="text", delimiter="\t")
    assert ds.captions == ["first", "second"] and ds.image_ids == [0, 0] and ds.num_images == 1


def test_caption_csv_errors(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", 0)
    match = r"missing\.csv' does not exist; expected layout: a CSV file with a header row"
    with pytest.raises(DatasetNotFoundError, match=match) as exc:
        CaptionCSV(tmp_path / "missing.csv")
    error_of(exc)
    with pytest.raises(DatasetNotFoundError, match="is not a file"):
        CaptionCSV(tmp_path)

    path = write_csv(tmp_path / "cols.csv", [["a.png", "x"]], header=("img", "text"))
    match = r"cols\.csv'.*no column 'image'; columns present: \['img', 'text'\]$"
    with pytest.raises(CaptionFileError, match=match):
        CaptionCSV(path)
    with pytest.raises(CaptionFileError, match="no column 'caption'") as exc:
        CaptionCSV(path, image_column="img")
    error_of(exc)
    with pytest.raises(CaptionFileError, match=r"columns present: \['image;caption'\] \(is delimiter=','"):
        CaptionCSV(write_csv(tmp_path / "semi.csv", [["a.png", "x"]], header=("image;caption",)))

    path = write_csv(tmp_path / "empty_caption.csv", [["a.png", "fine"], ["a.png", "   "]])
    with pytest.raises(CaptionFileError) as exc:
        CaptionCSV(path)
    message = error_of(exc)
    assert f"'{path}'" in message
    assert "data row 2 (line 3) has an empty caption in column 'caption'" in message
    with pytest.raises(CaptionFileError, match="data row 1 .* empty image path in column 'image'"):
        CaptionCSV(write_csv(tmp_path / "no_image.csv", [["", "x"]]))

    path = write_csv(tmp_path / "missing_image.csv", [["a.png", "x"], ["a.png", "y"], ["sub/b.png", "z"]])
    with pytest.raises(CaptionFileError) as exc:
        CaptionCSV(path)
    message = error_of(exc)
    assert f"'{path}'" in message and "data row 3 (line 4)" in message
    assert f"no image file at '{tmp_path / 'sub' / 'b.png'}'" in message

    (tmp_path / "quotes.csv").write_text('image,caption\na.png,"a "bad" quote\n')
    with pytest.raises(CaptionFileError, match=r"quotes\.csv': is not valid CSV \(line 2\)") as exc:
        CaptionCSV(tmp_path / "quotes.csv")
    error_of(exc)
    (tmp_path / "fields.csv").write_text("image,caption\na.png,x\na.png,a, b\n")
    with pytest.raises(CaptionFileError, match="data row 2 .* has 3 fields but the header has 2") as exc:
        CaptionCSV(tmp_path / "fields.csv")
    error_of(exc)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CaptionFileError, match=r"empty\.csv': is empty"):
        CaptionCSV(tmp_path / "empty.csv")
    (tmp_path / "header_only.csv").write_text("image,caption\n")
    with pytest.raises(CaptionFileError, match="no data rows"):
        CaptionCSV(tmp_path / "header_only.csv")
    (tmp_path / "latin1.csv").write_bytes("image,caption\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaptionFileError, match=r"latin1\.csv': is not UTF-8"):
        CaptionCSV(tmp_path / "latin1.csv")


def test_unreadable_image_fails_at_getitem(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    ds = CaptionCSV(write_csv(tmp_path / "c.csv", [["bad.png", "x"]]), image_size=8)
    with pytest.raises(ImageReadError, match=r"unreadable image '.*bad\.png'"):
        ds[0]


def test_caption_csv_datamodule(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / f"{i}.png", 40 * i)
    train = write_csv(tmp_path / "train.csv", [[f"{i}.png", f"caption {i}"] for i in range(4)])
    val = write_csv(tmp_path / "val.csv", [["0.png", "v0"], ["0.png", "v1"], ["1.png", "v2"]])
    dm = CaptionCSVDataModule(str(train), str(val), image_size=8, batch_size=2)
    assert dm.num_classes == 0 and dm.task == "retrieval"
    dm.setup("fit")
    dm.setup("test")  # the missing test split is not built
    batch = next(iter(dm.val_dataloader()))
    assert batch["caption"] == ["v0", "v1"] and batch["image_id"].tolist() == [0, 0]
    captions = sorted(c for b in dm.train_dataloader() for c in b["caption"])
    assert captions == [f"caption {i}" for i in range(4)]
    with pytest.raises(ValueError, match="no test split: test_csv was not given") as exc:
        dm.test_dataloader()
    error_of(exc)
    # a bad file fails when the datamodule is built
    with pytest.raises(DatasetNotFoundError, match="nope.csv"):
        CaptionCSVDataModule(str(train), str(tmp_path / "nope.csv"))
    with pytest.raises(CaptionFileError, match="data row 1"):
        CaptionCSVDataModule(str(train), test_csv=str(write_csv(tmp_path / "t.csv", [["9.png", "x"]])))


# --- KarpathyCaptions ------------------------------------------------------------------------------


def test_karpathy_splits_restval_and_max_captions(tmp_path: Path) -> None:
    path = write_karpathy(tmp_path)
    root = tmp_path / "images"
    train = KarpathyCaptions(path, root, "train", image_size=6)
    # train images 0, 4 and restval image 1, in file order: 2 + 3 + 2 captions
    assert train.num_images == 3 and len(train) == 7
    assert train.image_ids == [0, 0, 1, 1, 1, 2, 2]
    assert train.captions[:3] == ["image 0 caption 0", "image 0 caption 1", "image 1 caption 0"]
    assert train.image_paths[1] == root / "train2014" / "img1.png"
    assert torch.allclose(train[2]["image"], torch.full((3, 6, 6), 20 / 255))
    assert int(train[2]["image_id"]) == 1 and train[2]["caption"] == "image 1 caption 0"
    no_restval = KarpathyCaptions(path, root, "train", include_restval=False, image_size=6)
    assert no_restval.num_images == 2 and len(no_restval) == 4
    val = KarpathyCaptions(path, root, "val", image_size=6, max_captions_per_image=1)
    assert val.captions == ["image 2 caption 0", "image 5 caption 0"] and val.image_ids == [0, 1]
    test = KarpathyCaptions(path, root, "test", image_size=6)
    assert test.captions == ["image 3 caption 0", "image 3 caption 1", "image 3 caption 2"]
    assert test.image_ids == [0, 0, 0] and test.num_images == 1


def test_karpathy_errors(tmp_path: Path) -> None:
    root = tmp_path / "images"
    with pytest.raises(DatasetNotFoundError, match="expected layout: a Karpathy-split JSON") as exc:
        KarpathyCaptions(tmp_path / "missing.json", root)
    error_of(exc)
    (tmp_path / "broken.json").write_text('{"images": [\n{"filename": "a.png",,}]}')
    with pytest.raises(CaptionFileError, match=r"broken\.json': is not valid JSON: .*line 2") as exc:
        KarpathyCaptions(tmp_path / "broken.json", root)
    error_of(exc)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CaptionFileError, match="has a JSON list; expected a Karpathy-split JSON"):
        KarpathyCaptions(tmp_path / "list.json", root)

    def bad(change: dict[str, Any], index: int = 3) -> pytest.ExceptionInfo:
        entries = karpathy_entries()
        entries[index].update(change)
        path = write_karpathy(tmp_path / f"case{len(list(tmp_path.iterdir()))}", entries)
        with pytest.raises(CaptionFileError) as exc:
            KarpathyCaptions(path, path.parent / "images", "val")
        assert f"'{path}'" in error_of(exc)
        return exc

    assert "images[3] ('img3.png') has split 'dev'; expected one of" in str(bad({"split": "dev"}).value)
    assert "images[3] ('img3.png') sentences[1] has an empty caption" in str(
        bad({"sentences": [{"raw": "ok"}, {"raw": "  "}]}).value
    )
    no_raw = bad({"sentences": [{"tokens": ["a"]}]})
    assert "images[3] ('img3.png') sentences[0] has no 'raw'" in str(no_raw.value)
    assert "images[3] ('img3.png') has no 'sentences'" in str(bad({"sentences": []}).value)
    assert "images[2] has no 'filename' string" in str(bad({"filename": None}, index=2).value)

    path = write_karpathy(tmp_path / "noimg", images=False)
    write_png(path.parent / "images" / "val2014" / "img2.png", 0)
    with pytest.raises(CaptionFileError) as exc:
        KarpathyCaptions(path, path.parent / "images", "val")
    message = error_of(exc)
    assert "images[5] ('img5.png'): no image file at" in message
    assert str(path.parent / "images" / "val2014" / "img5.png") in message
    with pytest.raises(DatasetNotFoundError, match="image_root .* is not a folder"):
        KarpathyCaptions(path, tmp_path / "nowhere", "val")

    entries = [e for e in karpathy_entries() if e["split"] != "test"]
    path = write_karpathy(tmp_path / "notest", entries)
    match = r"no images with split in \['test'\]; splits present: \['restval', 'train', 'val'\]"
    with pytest.raises(CaptionFileError, match=match):
        KarpathyCaptions(path, path.parent / "images", "test")
    with pytest.raises(ValueError, match="split must be"):
        KarpathyCaptions(path, path.parent / "images", "restval")


def test_karpathy_datamodule(tmp_path: Path) -> None:
    path = write_karpathy(tmp_path)
    root = str(tmp_path / "images")
    dm = KarpathyDataModule(str(path), root, max_captions_per_image=2, batch_size=3, image_size=8)
    assert "val" in dm.datasets and dm.num_classes == 0
    dm.setup("fit")
    assert len(dm.dataset("train")) == 6 and dm.dataset("train").num_images == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["image_id"].tolist() == [0, 0, 1] and batch["image_id"].dtype == torch.int64
    assert batch["caption"] == ["image 2 caption 0", "image 2 caption 1", "image 5 caption 0"]
    (tmp_path / "images" / "val2014" / "img5.png").unlink()
    with pytest.raises(CaptionFileError, match=r"images\[5\] \('img5.png'\): no image file"):
        KarpathyDataModule(str(path), str(tmp_path / "images"))


def test_plot_draws_the_caption(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    data = SyntheticCaptionedShapes(4, templates="varied")
    fig = data.plot(data[1])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert fig.axes[0].get_title().replace("\n", " ") == data.captions[1]
    plt.close(fig)
    long = {"image": torch.rand(3, 8, 8), "caption": "word " * 30}
    fig = data.plot(long, prediction="a red circle")
    title = fig.axes[0].get_title()
    assert title.count("\n") >= 3 and max(len(line) for line in title.splitlines()) <= 40
    assert title.endswith("pred: a red circle")
    plt.close(fig)
    write_png(tmp_path / "a.png", 0)
    dm = CaptionCSVDataModule(str(write_csv(tmp_path / "c.csv", [["a.png", "black"]])), image_size=8)
    fig = dm.plot(dm.dataset("train")[0])
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "black"
    plt.close(fig)
