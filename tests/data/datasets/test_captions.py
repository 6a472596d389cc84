"""Caption datasets: CSV and Karpathy JSON readers (grouping, paths, splits), their one-line errors, ``plot``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.files import karpathy_entries, write_csv, write_karpathy, write_png
from tests.helpers import error_of
from visionkit.data import DatasetNotFoundError, ImageReadError
from visionkit.data.datamodules import CaptionCSVDataModule
from visionkit.data.datasets import CaptionCSV, KarpathyCaptions, SyntheticCaptionedShapes
from visionkit.data.errors import CaptionFileError

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
