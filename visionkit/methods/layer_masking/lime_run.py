"""The LIME masking analysis as a run: model source, images, explanations, output folder.

:func:`run_analysis` is what ``scripts/lime_masking_analysis.py`` calls: it builds the model
(:func:`build_source`: a shipped asset, a YAML config, a checkpoint or a timm backbone),
collects the images (:func:`collect_items`: files, folders, ``skimage:<name>`` photos or a
dataset split), explains every image under every fill (:mod:`.lime_analysis`) and writes
``panels/``, ``segments.npz``, ``explanations.json``, ``summary.json`` and ``summary.csv`` into
a hidden staging folder under ``out`` that is renamed to the next ``run_NNN`` only when
complete. Heavy dependencies (Lightning CLI, scikit-image, tqdm) are imported where used.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from visionkit.methods.layer_masking import lime_analysis
from visionkit.methods.layer_masking.convert import convert
from visionkit.methods.layer_masking.lime_analysis import LimeSettings

__all__ = ["ImageSpec", "ModelSpec", "Source", "build_source", "collect_items", "run_analysis", "summary_table"]

DEFAULT_ASSET = "shapes_test_resnet"


@dataclass
class ModelSpec:
    """Where the model comes from: one of ``asset``, ``config`` (+ ``ckpt``), ``ckpt`` alone, or
    ``backbone`` (+ ``weights``, ``num_classes``, ``normalize_input``); none means :data:`DEFAULT_ASSET`."""

    asset: str | None = None
    config: str | None = None
    ckpt: str | None = None
    backbone: str | None = None
    weights: str | None = None
    num_classes: int | None = None
    normalize_input: bool = False


@dataclass
class ImageSpec:
    """The images: ``inputs`` (files, folders, ``skimage:<name>``) or the first ``num_images`` of
    ``split``; file/photo inputs are resized to ``image_size`` px (default: the model's size)."""

    inputs: list[str] = field(default_factory=list)
    split: str = "val"
    num_images: int = 8
    image_size: int | None = None


@dataclass
class Source:
    """What the analysis needs: the converted model, its input normalisation, classes and data."""

    model: nn.Module
    normalize: Any
    classes: list[str] | None
    image_size: int | None
    dataset: Callable[[str], Any] | None = None
    description: str = ""


# --------------------------------------------------------------------------------------------
# Model and data
# --------------------------------------------------------------------------------------------
def _unwrap(task: Any) -> nn.Module:
    from visionkit.tuners import BaseTuner

    net = getattr(task, "network", None) or getattr(task, "model", task)
    return net.base_model if isinstance(net, BaseTuner) else net


def _load_weights(task: nn.Module, ckpt: str) -> None:
    """Load a checkpoint's state dict into a task built from a config (strict: every key must fit)."""
    from visionkit.core.weights import WeightsError, read_state_dict

    result = task.load_state_dict(read_state_dict(ckpt), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(f"checkpoint '{ckpt}' does not fit the task: missing {list(result.missing_keys)[:3]}, "
                           f"unexpected {list(result.unexpected_keys)[:3]}")


def _from_config(config: str, ckpt: str | None) -> Source:
    from visionkit.cli import cli

    if not Path(config).is_file():
        raise FileNotFoundError(f"config '{config}' does not exist")
    run = cli(["--config", config, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"], run=False)
    task = run.model
    if ckpt:
        _load_weights(task, ckpt)
    dm = run.datamodule
    classes = None
    try:
        classes = list(dm.dataset("train").classes)
    except (AttributeError, TypeError, OSError):
        pass
    return Source(convert(_unwrap(task).eval()), getattr(task, "normalize", None), classes,
                  getattr(dm, "image_size", None), lambda split: dm.dataset(split), f"config {config}")


def _from_checkpoint(ckpt: str) -> Source:
    """A checkpoint alone: the task it records (a LayerMaskingTask when it records none), via ``load_task``."""
    from visionkit.core.checkpoints import load_task, read_checkpoint
    from visionkit.methods.layer_masking.task import LayerMaskingTask
    from visionkit.tasks.classification import ClassifierBase

    info = read_checkpoint(ckpt, flag="--ckpt")
    expected = ClassifierBase if info.class_path else LayerMaskingTask
    # the weights come from the checkpoint: never re-read the backbone's original weights
    task = load_task(info, expected, checkpoint_path=None, pretrained=False)
    return Source(convert(_unwrap(task).eval()), task.normalize, None, task.hparams.get("image_size"), None,
                  f"checkpoint {ckpt}")


def build_source(spec: ModelSpec) -> Source:
    """The model (converted to layer masking), its normalisation, class names and dataset."""
    if spec.config:
        return _from_config(spec.config, spec.ckpt)
    if spec.ckpt:
        return _from_checkpoint(spec.ckpt)
    if spec.backbone:
        from visionkit.backbones.factory import create_backbone, input_normalization

        net = create_backbone(spec.backbone, checkpoint_path=spec.weights, num_classes=spec.num_classes)
        size = (getattr(net, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
        norm = input_normalization(net) if spec.normalize_input else nn.Identity()
        return Source(convert(net.eval()), norm, None, size, None, f"backbone {spec.backbone}")
    from visionkit.backbones.assets import asset_metadata, load_asset
    from visionkit.data.datamodules.synthetic_shapes import SyntheticShapesDataModule

    name = spec.asset or DEFAULT_ASSET
    meta = asset_metadata(name)
    net = convert(load_asset(name).eval())
    dm = SyntheticShapesDataModule(num_classes=meta["num_classes"], image_size=meta["image_size"] or 32)
    return Source(net, None, meta["classes"] or None, meta["image_size"], lambda split: dm.dataset(split),
                  f"asset {name} (val acc {meta.get('val_acc', '?')})")


def skimage_photo(name: str, size: int) -> Any:
    """A scikit-image bundled photo, centre-cropped square and resized: ``(size, size, 3)`` float64 in [0, 1]."""
    import numpy as np
    import skimage.data
    from PIL import Image

    loader = getattr(skimage.data, name, None)
    if loader is None or name.startswith("_") or not callable(loader):
        raise FileNotFoundError(f"input 'skimage:{name}': scikit-image has no bundled image '{name}'")
    try:
        arr = np.asarray(loader())
    except Exception as err:  # noqa: BLE001 - e.g. images that need a download
        raise FileNotFoundError(f"input 'skimage:{name}' is not available offline ({type(err).__name__})") from err
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = (255 * (arr.astype(np.float64) - arr.min()) / max(float(np.ptp(arr)), 1e-8)).astype(np.uint8)
    h, w = arr.shape[:2]
    s = min(h, w)
    crop = arr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = Image.fromarray(crop).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float64) / 255.0


def _split_items(images: ImageSpec, source: Source) -> list[dict[str, Any]]:
    import numpy as np

    if source.dataset is None:
        raise ValueError("this model source has no dataset: give image files, folders or skimage:<name> inputs")
    data = source.dataset(images.split)
    items = []
    for i in range(min(images.num_images, len(data))):
        sample = data[i]
        label = sample.get("label")
        if label is not None and label.ndim != 0:
            raise ValueError(f"split '{images.split}' has multi-label samples; LIME explains one class per image")
        mask = sample.get("mask")
        items.append({"name": f"{images.split}_{i:03d}",
                      "image": sample["image"][:3].permute(1, 2, 0).numpy().astype(np.float64),
                      "label": None if label is None else int(label), "mask": None if mask is None else mask.numpy()})
    return items


def collect_items(images: ImageSpec, source: Source) -> list[dict[str, Any]]:
    """Images to explain: ``{"name", "image" (H, W, 3) float, "label", "mask"}`` dicts."""
    import numpy as np

    from visionkit.data.datasets.image_folder import IMAGE_EXTENSIONS, read_image

    if not images.inputs:
        return _split_items(images, source)
    size = images.image_size or source.image_size or 224
    items: list[dict[str, Any]] = []
    for entry in images.inputs:
        if entry.startswith("skimage:"):
            name = entry.split(":", 1)[1]
            items.append({"name": f"skimage_{name}", "image": skimage_photo(name, size), "label": None, "mask": None})
            continue
        path = Path(entry)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise FileNotFoundError(f"input folder '{entry}' holds no images with extensions {IMAGE_EXTENSIONS}")
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"input '{entry}' does not exist")
        for f in files:
            image = read_image(f, size).permute(1, 2, 0).numpy().astype(np.float64)
            items.append({"name": f.stem, "image": image, "label": None, "mask": None})
    return items


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def _jsonable(record: dict[str, Any], classes: list[str] | None) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in ("segments", "fills")}
    if classes:
        out["target_name"] = classes[record["target"]] if record["target"] < len(classes) else None
        out["pred_name"] = classes[record["pred"]] if record["pred"] < len(classes) else None
    out["fills"] = {
        fill: {"weights": [round(float(w), 6) for w in res["weights"]], "intercept": res["intercept"],
               "r2": res["score"], "top_k": [int(i) for i in res["top"]], "coverage": res["coverage"],
               "jaccard": res["jaccard"], "ablation_correct_grey": res["ablation_grey"],
               "ablation_correct_layer": res["ablation_layer"], "seconds": round(res["seconds"], 3),
               "classifier_calls": res["calls"]}
        for fill, res in record["fills"].items()
    }
    return out


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    """The printed summary table (one row per fill)."""
    head = ["fill", "coverage", "Jaccard@k", "win %", "abl.acc grey", "abl.acc layer", "LIME R2", "s/expl"]
    rows = [[fill, _fmt(s["coverage"]) + (f" ±{s['coverage_sd']:.2f}" if s["coverage_sd"] is not None else ""),
             _fmt(s["jaccard"]), "-" if s["win_pct"] is None else f"{s['win_pct']:.0f}",
             _fmt(s["ablation_acc_grey"], True), _fmt(s["ablation_acc_layer"], True), _fmt(s["r2"]),
             f"{s['seconds']:.2f}"] for fill, s in summary.items()]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def publish(staging: Path, parent: str | Path) -> Path:
    """Rename the finished ``staging`` folder to the next free ``<parent>/run_NNN`` and return it.

    The name is claimed by creating it (so concurrent runs never share one), then the staging
    folder replaces the empty claimed folder in one rename.
    """
    from visionkit.utils.runs import new_run_dir

    claimed = new_run_dir(parent)
    try:
        os.rename(staging, claimed)
    except OSError:  # platforms whose rename does not replace an empty folder
        claimed.rmdir()
        os.rename(staging, claimed)
    return claimed


def write_outputs(out: Path, meta: dict[str, Any], source: Source, items: list[dict[str, Any]],
                  records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Panels, ``segments.npz``, ``explanations.json``, ``summary.json`` and ``summary.csv`` under ``out``."""
    import numpy as np

    from visionkit.callbacks.images import save_grid

    for index, (rec, item) in enumerate(zip(records, items, strict=True)):
        tiles = lime_analysis.render_panel(rec, item["image"], item.get("mask"), source.classes)
        save_grid(tiles, out / "panels" / f"{index:03d}_{rec['name']}.png", nrow=len(tiles))
    np.savez_compressed(out / "segments.npz", **{rec["name"]: rec["segments"] for rec in records})
    (out / "explanations.json").write_text(json.dumps(
        {**meta, "images": [_jsonable(r, source.classes) for r in records]}, indent=1))
    (out / "summary.json").write_text(json.dumps({**meta, "summary": summary}, indent=1))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        keys = list(next(iter(summary.values())))
        writer.writerow(["fill", *keys])
        for fill, s in summary.items():
            writer.writerow([fill, *(s[k] for k in keys)])


def _explain(source: Source, items: list[dict[str, Any]], settings: LimeSettings, device: str,
             progress: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    bar = tqdm(total=len(items) * len(settings.fills), desc="LIME", unit="expl", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        return lime_analysis.analyse(source.model, items, settings, source.normalize, device,
                                     progress=lambda desc: (bar.set_postfix_str(desc, refresh=False), bar.update(1)))
    finally:
        bar.close()


def run_analysis(model: ModelSpec, images: ImageSpec, settings: LimeSettings, out: str | Path,
                 device: str = "cpu", progress: bool = True) -> Path:
    """Build, explain, write, print the summary; returns the run folder ``<out>/run_NNN``.

    Everything is written into a hidden staging folder under ``out`` that becomes ``run_NNN``
    only when complete; on any failure (or Ctrl-C) the staging folder is removed, and so is
    ``out`` when this run created it and it is empty.
    """
    import torch

    from visionkit.utils.runs import check_out

    started = time.perf_counter()
    check_out(out)
    source = build_source(model)
    source.model.to(device)
    items = collect_items(images, source)
    root = Path(out)
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".run_staging_{uuid.uuid4().hex[:12]}"  # hidden from run_* globs; after every input was read
    staging.mkdir()
    try:
        records = _explain(source, items, settings, device, progress)
        summary = lime_analysis.summarise(records, settings.fills)
        meta = {"model": source.description, "device": device, "torch_threads": torch.get_num_threads(),
                "inputs": images.inputs or f"{images.split}[:{images.num_images}]", "settings": vars(settings),
                "seconds": round(time.perf_counter() - started, 2)}
        write_outputs(staging, meta, source, items, records, summary)
        run_dir = publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made_root:
            try:
                root.rmdir()  # only when empty: never removes anything else
            except OSError:
                pass
        raise
    print(f"\nLIME masking analysis: {len(items)} images x {len(settings.fills)} fills, {settings.num_samples} samples, "
          f"{settings.segmentation} segments; {source.description}")
    print(summary_table(summary))
    print("coverage/Jaccard vs the object mask (higher = better); abl.acc = accuracy after removing the top-k segments "
          "(lower = more faithful)")
    print(f"wrote {run_dir} (panels/, explanations.json, summary.json, summary.csv) in {time.perf_counter() - started:.1f} s")
    return run_dir
