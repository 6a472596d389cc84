"""Predict: PredictionWriter writes one CSV row per input, never overwrites, de-duplicates; predict_root."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from tests.conftest import REPO
from visionkit.callbacks import PredictionWriter
from visionkit.callbacks.predictions import csv_text
from visionkit.data.datamodules import ImageFolderDataModule
from visionkit.tasks import ClassificationTask

TINY = str(REPO / "tests" / "conf" / "classification.yaml")


def _pngs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _trainer(tmp_path: Path, writer: PredictionWriter) -> Trainer:
    return Trainer(
        accelerator="cpu", devices=1, callbacks=[writer], logger=CSVLogger(tmp_path / "logs"),
        enable_progress_bar=False, enable_model_summary=False,
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A 2-class dataset (``cat``, ``dog``) and 5 new images in nested folders (plus a non-image file)."""
    _pngs(tmp_path / "data" / "cat", 3, seed=1)
    _pngs(tmp_path / "data" / "dog", 3, seed=2)
    new = _pngs(tmp_path / "new", 3, seed=3) + _pngs(tmp_path / "new" / "day2", 2, seed=4)
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    return tmp_path / "data", new


def test_writer_one_row_per_image_and_no_overwrite(
    tmp_path: Path, folders: tuple[Path, list[Path]], capsys: pytest.CaptureFixture
) -> None:
    root, new = folders
    dm = ImageFolderDataModule(str(root), image_size=32, batch_size=2, predict_root=str(tmp_path / "new"))
    task = ClassificationTask(backbone="test_resnet", num_classes=2, image_size=32)
    writer = PredictionWriter()
    trainer = _trainer(tmp_path, writer)
    trainer.predict(task, datamodule=dm)
    first = writer.path
    assert first is not None and first.name == "predictions.csv" and first.parent == Path(trainer.log_dir)
    assert f"wrote 5 predictions to {first}" in capsys.readouterr().out
    rows = _read(first)
    assert list(rows[0]) == ["index", "path", "pred", "pred_name", "prob_cat", "prob_dog"]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in new)
    assert [int(r["index"]) for r in rows] == list(range(5))
    probs = torch.tensor([[float(r["prob_cat"]), float(r["prob_dog"])] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(probs.sum(1), torch.ones(5, dtype=torch.float64), atol=1e-5, rtol=0.0)
    assert [int(r["pred"]) for r in rows] == probs.argmax(1).tolist()
    assert [r["pred_name"] for r in rows] == [["cat", "dog"][int(r["pred"])] for r in rows]
    # the CSV holds the task's probabilities for those files
    with torch.no_grad():
        direct = task.eval()(torch.stack([dm.predict_dataset()[i]["image"] for i in range(5)])).softmax(-1)
    torch.testing.assert_close(probs.float(), direct, atol=1e-5, rtol=0.0)

    before = first.read_bytes()
    trainer.predict(task, datamodule=dm)
    assert writer.path == first.with_name("predictions_1.csv")
    assert first.read_bytes() == before, "the first predictions.csv was overwritten"
    assert len(_read(writer.path)) == 5


def test_without_predict_root_the_test_split_is_predicted(tmp_path: Path, folders: tuple[Path, list[Path]]) -> None:
    root, _ = folders
    dm = ImageFolderDataModule(str(root), image_size=32, batch_size=4, val_fraction=0.5)
    writer = PredictionWriter()
    _trainer(tmp_path, writer).predict(ClassificationTask(num_classes=2, image_size=32), datamodule=dm)
    rows = _read(writer.path)
    test_paths = sorted(str(p) for p, _ in dm.dataset("test").items)
    assert len(rows) == 3 and sorted(r["path"] for r in rows) == test_paths


def test_predict_step_returns_probs_index_and_path(folders: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, _ = folders
    dm = ImageFolderDataModule(str(root), image_size=32, batch_size=3, predict_root=str(tmp_path / "new"))
    batch = next(iter(dm.predict_dataloader()))
    out = ClassificationTask(num_classes=2, image_size=32).eval().predict_step(batch, 0)
    assert set(out) == {"probs", "index", "path"}
    assert out["probs"].shape == (3, 2) and out["probs"].dtype == torch.float32
    assert out["index"].tolist() == [0, 1, 2] and out["path"] == batch["path"]


def test_rows_repeated_by_a_padding_sampler_are_written_once() -> None:
    probs = np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]], np.float32)
    rank0 = (0, np.array([0, 2]), None, probs[[0, 2]])
    rank1 = (0, np.array([1, 0]), None, probs[[1, 0]])  # DistributedSampler pads with item 0 again
    text, count = csv_text([rank0, rank1], ["a", "b"])
    rows = list(csv.DictReader(text.splitlines()))
    assert count == 3 and [r["index"] for r in rows] == ["0", "1", "2"]
    assert [r["pred_name"] for r in rows] == ["b", "a", "a"]  # argmax; the 0.5/0.5 tie goes to class 0
    assert "path" not in rows[0]


def test_cli_predict_writes_predictions_with_the_default_callbacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from visionkit.cli import main

    main(["predict", "--config", TINY, "--trainer.limit_predict_batches", "2", "--data.init_args.batch_size", "4"])
    files = sorted(Path("logs").glob("*/version_*/predictions.csv"))
    assert len(files) == 1, files
    rows = list(csv.DictReader(files[0].open()))
    assert [r["index"] for r in rows] == [str(i) for i in range(8)]  # 2 batches of 4, in dataset order
    probs = np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert f"wrote 8 predictions to {files[0]}" in capsys.readouterr().out


def test_predict_of_a_task_without_class_probabilities_warns_and_writes_nothing(tmp_path: Path) -> None:
    from visionkit.data.datamodules import SyntheticCaptionsDataModule
    from visionkit.tasks import RetrievalTask

    trainer = Trainer(accelerator="cpu", logger=CSVLogger(tmp_path), callbacks=[PredictionWriter()],
                      limit_predict_batches=1, enable_progress_bar=False)
    data = SyntheticCaptionsDataModule(num_train=4, num_val=4, num_test=4, batch_size=4, image_size=32)
    with pytest.warns(UserWarning, match="RetrievalTask.predict_step returns no class probabilities"):
        trainer.predict(RetrievalTask(asset="clip_shapes_tiny", image_size=32), data)
    assert not list(tmp_path.rglob("predictions*.csv"))


DDP_SCRIPT = """
import sys
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from visionkit.callbacks import PredictionWriter
from visionkit.data.datamodules import ImageFolderDataModule
from visionkit.tasks import ClassificationTask

if __name__ == "__main__":
    root, new = sys.argv[1], sys.argv[2]
    dm = ImageFolderDataModule(root, image_size=32, batch_size=2, predict_root=new)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", callbacks=[PredictionWriter()],
                      logger=CSVLogger("logs"), enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(ClassificationTask(num_classes=2, image_size=32), datamodule=dm, return_predictions=False)
"""


@pytest.mark.slow  # two processes: about 25 s on 2 CPU cores
@pytest.mark.xdist_group("ddp")  # 2-process runs one at a time (.ci/run: --dist loadgroup)
def test_ddp_two_ranks_write_one_file(tmp_path: Path, folders: tuple[Path, list[Path]]) -> None:
    root, new = folders
    script = tmp_path / "ddp_predict.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    out = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "new")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (csv_path,) = (tmp_path / "logs").rglob("predictions*.csv")
    rows = _read(csv_path)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in new)
    assert out.stdout.count("wrote 5 predictions") == 1
