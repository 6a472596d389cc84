"""LIME masking analysis: explain images with LIME under several fills that share one perturbation matrix.

Layer masking receives the real keep mask of every LIME sample; grey, black, mean and blur paint
the hidden superpixels. Each image gets a PNG panel (input, then the top-k segments per fill),
and the run writes ``explanations.json`` (segment weights per fill), ``summary.json``/``.csv``
and prints a summary table: coverage and Jaccard of the top-k segments against the object mask
(where one is known), win %, and top-k ablation accuracy (lower = more faithful).

    python scripts/lime_masking_analysis.py                         # tiny CNN in assets/, 8 SyntheticShapes images
    python scripts/lime_masking_analysis.py skimage:astronaut skimage:coffee photos/  # files, folders, skimage photos
    python scripts/lime_masking_analysis.py --config configs/layer_masking/shapes_test_resnet.yaml \\
        --ckpt logs/LayerMaskingTask/version_0/checkpoints/last.ckpt --split test --num-images 20
    python scripts/lime_masking_analysis.py --backbone resnet50 --weights r50.safetensors --num-classes 1000 \\
        --normalize-input --image-size 224 skimage:chelsea

Every run writes a new folder ``<out>/run_NNN`` (default ``outputs/lime_masking``); nothing already written is replaced.
The outputs are built in a hidden temporary folder under ``<out>`` and renamed to ``run_NNN`` only once
complete, so a run that fails or is interrupted leaves no run folder behind.
Bad input (a missing file, an out-of-range option) stops with one line ``lime_masking_analysis: error: ...``
and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

from visionkit.errors import exit_on_user_error

PROG = "lime_masking_analysis"
FILLS = ["layer", "grey", "black", "blur"]


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``<prog>: error: <message>`` (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        """Print one error line (no usage block) and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


#: Integer options and their smallest allowed value (``None`` values mean "not given").
INT_MIN = {"num_images": 1, "image_size": 8, "num_classes": 2, "n_segments": 2, "grid": 1, "num_samples": 2,
           "batch_size": 1, "top_k": 1, "seed": 0}
#: Float options: ``(smallest allowed value, whether the smallest value itself is allowed)``.
FLOAT_MIN = {"compactness": (0.0, False), "blur_sigma": (0.0, True)}
SEED_MAX = 2**32 - 1  # numpy's RandomState seed range


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_ranges(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One-line parser error for the first numeric option outside its range."""
    for dest, low in INT_MIN.items():
        value = getattr(args, dest)
        if value is not None and value < low:
            p.error(f"{_option(dest)} must be at least {low}, got {value}")
    if args.seed > SEED_MAX:
        p.error(f"--seed must be at most {SEED_MAX}, got {args.seed}")
    for dest, (low, inclusive) in FLOAT_MIN.items():
        value = getattr(args, dest)
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            p.error(f"{_option(dest)} must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (numeric options range-checked; errors are one line, exit code 2)."""
    p = _OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="*", help="image files, folders of images, or skimage:<name> photos; "
                   "none: the first --num-images items of --split")
    src = p.add_argument_group("model (default: --asset shapes_test_resnet)")
    src.add_argument("--asset", default=None, help="a shipped pretrained backbone in assets/")
    src.add_argument("--config", default=None, help="a visionkit YAML config (model and data are built from it)")
    src.add_argument("--ckpt", default=None, help="a Lightning checkpoint of the config's task (or, alone, of a "
                     "LayerMaskingTask / ClassificationTask)")
    src.add_argument("--backbone", default=None, help="a timm model name (with --weights, --num-classes)")
    src.add_argument("--weights", default=None, help="local weights for --backbone (.safetensors/.pth/.ckpt)")
    src.add_argument("--num-classes", type=int, default=None, help="classes of --backbone (at least 2)")
    src.add_argument("--normalize-input", action="store_true", help="apply the backbone's mean/std (--backbone only)")
    data = p.add_argument_group("images")
    data.add_argument("--split", default="val", choices=["train", "val", "test"], help="dataset split when no inputs")
    data.add_argument("--num-images", type=int, default=8, help="images taken from --split")
    data.add_argument("--image-size", type=int, default=None, help="resize file/photo inputs to this side, "
                      "at least 8 px (default: the model's training size)")
    lime = p.add_argument_group("LIME")
    lime.add_argument("--fills", nargs="+", default=FILLS, help="layer, layer_zero, layer_partial, grey, black, mean, blur")
    lime.add_argument("--segmentation", default="slic", choices=["slic", "quickshift", "grid"])
    lime.add_argument("--n-segments", type=int, default=40, help="SLIC segments (at least 2)")
    lime.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness (> 0)")
    lime.add_argument("--grid", type=int, default=4, help="cell side (px, at least 1) for --segmentation grid")
    lime.add_argument("--num-samples", type=int, default=1000, help="LIME perturbations per explanation (at least 2)")
    lime.add_argument("--batch-size", type=int, default=250, help="perturbations per model call (at least 1)")
    lime.add_argument("--top-k", type=int, default=5, help="k of the top-k metrics when no object mask is known "
                      "(at least 1)")
    lime.add_argument("--seed", type=int, default=0, help=f"seed of the shared perturbation matrix (0..{SEED_MAX})")
    lime.add_argument("--blur-sigma", type=float, default=2.0, help="sigma (px) of the blur fill (>= 0; 0 = no blur)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="outputs/lime_masking", help="parent folder of the run folders")
    out.add_argument("--device", default="cpu", help="torch device")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    check_ranges(p, args)
    chosen = [n for n in ("asset", "config", "backbone") if getattr(args, n)]
    if len(chosen) > 1:
        p.error(f"give one model source, got --{' and --'.join(chosen)}")
    if args.weights and not args.backbone:
        p.error("--weights needs --backbone")
    if args.backbone and args.num_classes is None:
        p.error("--backbone needs --num-classes")
    return args


# --------------------------------------------------------------------------------------------
# Model and data
# --------------------------------------------------------------------------------------------
class Source:
    """What the analysis needs: the converted model, its input normalisation, classes and data."""

    def __init__(self, model: Any, normalize: Any, classes: list[str] | None, image_size: int | None,
                 dataset: Any = None, description: str = "") -> None:
        self.model, self.normalize, self.classes = model, normalize, classes
        self.image_size, self.dataset, self.description = image_size, dataset, description


def _unwrap(task: Any) -> Any:
    from visionkit.tuners import BaseTuner

    net = getattr(task, "network", None) or getattr(task, "model", task)
    return net.base_model if isinstance(net, BaseTuner) else net


def _load_task_weights(task: Any, ckpt: str) -> None:
    from visionkit.core.weights import WeightsError, read_state_dict

    state = read_state_dict(ckpt)
    result = task.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("protocols.")]
    if missing or result.unexpected_keys:
        raise WeightsError(f"checkpoint '{ckpt}' does not fit the task: missing {missing[:3]}, "
                           f"unexpected {list(result.unexpected_keys)[:3]}")


def build_source(args: argparse.Namespace) -> Source:
    """The model (converted to layer masking), its normalisation, class names and dataset."""
    import torch
    from torch import nn

    from visionkit.methods.layer_masking import convert

    if args.config:
        from visionkit.cli import cli

        if not Path(args.config).is_file():
            raise FileNotFoundError(f"config '{args.config}' does not exist")
        run = cli(["--config", args.config, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"],
                  run=False)
        task = run.model
        if args.ckpt:
            _load_task_weights(task, args.ckpt)
        dm = run.datamodule
        classes = None
        try:
            classes = list(dm.dataset("train").classes)
        except (AttributeError, TypeError, OSError):
            pass
        net = convert(_unwrap(task).eval())
        return Source(net, getattr(task, "normalize", None), classes, getattr(dm, "image_size", None),
                      lambda split: dm.dataset(split), f"config {args.config}")
    if args.ckpt:
        from visionkit.core.weights import WeightsError
        from visionkit.methods.layer_masking import LayerMaskingTask

        if not Path(args.ckpt).is_file():
            raise FileNotFoundError(f"checkpoint '{args.ckpt}' does not exist")
        try:
            blob = torch.load(args.ckpt, map_location="cpu", weights_only=True)
            hp = dict(blob["hyper_parameters"])
        except Exception as err:  # noqa: BLE001 - any failure means "not a readable Lightning checkpoint"
            raise WeightsError(f"checkpoint '{args.ckpt}' is not a readable Lightning checkpoint ({err})") from err
        import inspect

        names = set(inspect.signature(LayerMaskingTask.__init__).parameters) - {"self"}
        task = LayerMaskingTask(**{k: v for k, v in hp.items() if k in names and k != "checkpoint_path"})
        _load_task_weights(task, args.ckpt)
        return Source(convert(_unwrap(task).eval()), task.normalize, None, hp.get("image_size"), None,
                      f"checkpoint {args.ckpt}")
    if args.backbone:
        from visionkit.backbones.factory import create_backbone, input_normalization

        net = create_backbone(args.backbone, checkpoint_path=args.weights, num_classes=args.num_classes)
        size = (getattr(net, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
        norm = input_normalization(net) if args.normalize_input else nn.Identity()
        return Source(convert(net.eval()), norm, None, size, None, f"backbone {args.backbone}")
    from visionkit.backbones.assets import asset_metadata, load_asset
    from visionkit.data.datamodules.synthetic_shapes import SyntheticShapesDataModule

    name = args.asset or "shapes_test_resnet"
    meta = asset_metadata(name)
    net = convert(load_asset(name).eval())
    dm = SyntheticShapesDataModule(num_classes=meta["num_classes"], image_size=meta["image_size"] or 32)
    return Source(net, None, meta["classes"] or None, meta["image_size"], lambda split: dm.dataset(split),
                  f"asset {name} (val acc {meta.get('val_acc', '?')})")


def _photo(name: str, size: int) -> Any:
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


def collect_items(args: argparse.Namespace, source: Source) -> list[dict[str, Any]]:
    """Images to explain: ``{"name", "image" (H, W, 3) float, "label", "mask"}`` dicts."""
    import numpy as np

    from visionkit.data.datasets.image_folder import IMAGE_EXTENSIONS, read_image

    size = args.image_size or source.image_size or 224
    items: list[dict[str, Any]] = []
    if not args.inputs:
        if source.dataset is None:
            raise ValueError("this model source has no dataset: give image files, folders or skimage:<name> inputs")
        data = source.dataset(args.split)
        for i in range(min(args.num_images, len(data))):
            sample = data[i]
            label = sample.get("label")
            if label is not None and label.ndim != 0:
                raise ValueError(f"split '{args.split}' has multi-label samples; LIME explains one class per image")
            mask = sample.get("mask")
            items.append({"name": f"{args.split}_{i:03d}", "image": sample["image"][:3].permute(1, 2, 0).numpy().astype(np.float64),
                          "label": None if label is None else int(label),
                          "mask": None if mask is None else mask.numpy()})
        return items
    for entry in args.inputs:
        if entry.startswith("skimage:"):
            name = entry.split(":", 1)[1]
            items.append({"name": f"skimage_{name}", "image": _photo(name, size), "label": None, "mask": None})
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


def _publish(staging: Path, parent: str) -> Path:
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


def _write_outputs(out: Path, args: argparse.Namespace, source: Source, items: list[dict[str, Any]],
                   records: list[dict[str, Any]], summary: dict[str, Any], settings: Any, started: float) -> None:
    """Panels, ``segments.npz``, ``explanations.json``, ``summary.json`` and ``summary.csv`` under ``out``."""
    import numpy as np
    import torch

    from visionkit.callbacks.images import save_grid
    from visionkit.methods.layer_masking.lime_analysis import render_panel

    for index, (rec, item) in enumerate(zip(records, items, strict=True)):
        tiles = render_panel(rec, item["image"], item.get("mask"), source.classes)
        save_grid(tiles, out / "panels" / f"{index:03d}_{rec['name']}.png", nrow=len(tiles))
    np.savez_compressed(out / "segments.npz", **{rec["name"]: rec["segments"] for rec in records})
    meta = {"model": source.description, "device": args.device, "torch_threads": torch.get_num_threads(),
            "inputs": args.inputs or f"{args.split}[:{args.num_images}]", "settings": vars(settings),
            "seconds": round(time.perf_counter() - started, 2)}
    (out / "explanations.json").write_text(json.dumps(
        {**meta, "images": [_jsonable(r, source.classes) for r in records]}, indent=1))
    (out / "summary.json").write_text(json.dumps({**meta, "summary": summary}, indent=1))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        keys = list(next(iter(summary.values())))
        writer.writerow(["fill", *keys])
        for fill, s in summary.items():
            writer.writerow([fill, *(s[k] for k in keys)])


def run(args: argparse.Namespace) -> Path:
    """Build, explain, write; returns the run folder.

    Everything is written into a hidden staging folder under ``--out`` that becomes ``run_NNN``
    only when complete; on any failure (or Ctrl-C) the staging folder is removed, and so is
    ``--out`` when this run created it and it is empty.
    """
    from tqdm import tqdm

    from visionkit.methods.layer_masking.lime_analysis import LimeSettings, analyse, summarise
    from visionkit.utils.runs import check_out

    started = time.perf_counter()
    check_out(args.out)
    settings = LimeSettings(fills=args.fills, num_samples=args.num_samples, batch_size=args.batch_size,
                            segmentation=args.segmentation, n_segments=args.n_segments, compactness=args.compactness,
                            grid=args.grid, top_k=args.top_k, seed=args.seed, blur_sigma=args.blur_sigma)
    source = build_source(args)
    source.model.to(args.device)
    items = collect_items(args, source)
    root = Path(args.out)
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".run_staging_{uuid.uuid4().hex[:12]}"  # hidden from run_* globs; after every input was read
    staging.mkdir()
    try:
        bar = tqdm(total=len(items) * len(settings.fills), desc="LIME", unit="expl", file=sys.stderr,
                   disable=args.no_progress, dynamic_ncols=True)
        try:
            records = analyse(source.model, items, settings, source.normalize, args.device,
                              progress=lambda desc: (bar.set_postfix_str(desc, refresh=False), bar.update(1)))
        finally:
            bar.close()
        summary = summarise(records, settings.fills)
        _write_outputs(staging, args, source, items, records, summary, settings, started)
        out = _publish(staging, args.out)
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
    print(f"wrote {out} (panels/, explanations.json, summary.json, summary.csv) in {time.perf_counter() - started:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on bad input, with one ``error:`` line)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a bad option (2)
        return int(exit_.code or 0)
    try:
        with exit_on_user_error(PROG, extra=(FileNotFoundError, FileExistsError, ValueError)):
            run(args)
    except SystemExit as exit_:
        return int(exit_.code)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spin-waiting on shared cores
    sys.exit(main())
