"""Train and export the tiny pretrained models in ``assets/`` (offline, deterministic, CPU).

Each model is trained from scratch with ``visionkit fit`` on the config in
``configs/pretrain/``; the best checkpoint's network (by the task's monitored metric:
``val_acc`` for classifiers, ``val_rsum`` for the open_clip model) is saved as safetensors with
its recipe in the file's metadata. Later demos transfer from these files (``asset: <name>``).

    python scripts/make_pretrained_assets.py              # every asset
    python scripts/make_pretrained_assets.py --only shapes_test_resnet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    "shapes_test_resnet": REPO / "configs" / "pretrain" / "shapes_test_resnet.yaml",
    "shapes_test_vit": REPO / "configs" / "pretrain" / "shapes_test_vit.yaml",
    "clip_shapes_tiny": REPO / "configs" / "pretrain" / "clip_shapes_tiny.yaml",
}


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_and_export(name: str, config: Path, out_dir: Path) -> dict:
    """Train ``config`` in a scratch folder and write ``out_dir/<name>.safetensors``; returns its record."""
    import torch
    from safetensors.torch import save_file

    from visionkit.cli import cli
    from visionkit.utils.runs import epoch_values, read_metrics

    torch.set_num_threads(2)
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            run = cli(["fit", "--config", str(config), "--trainer.enable_progress_bar", "false"])
            best = run.trainer.checkpoint_callback.best_model_path
            task = type(run.model).load_from_checkpoint(best, map_location="cpu")
            rows = read_metrics(run.trainer.log_dir)
        finally:
            os.chdir(cwd)
    hp = task.hparams
    monitor = type(task).monitor
    best = max(epoch_values(rows, monitor).values())
    meta = {
        "backbone": hp.backbone,
        "backbone_kwargs": json.dumps(hp.get("backbone_kwargs") or {}),
        "num_classes": str(hp.get("num_classes", 0)),
        "image_size": str(hp.image_size),
        "classes": json.dumps(list(getattr(run.datamodule.dataset("train"), "classes", []))),
        monitor: f"{best:.4f}",
        "config": str(config.relative_to(REPO)),
    }
    state = {k: v.detach().contiguous() for k, v in task.model.state_dict().items()}
    out = out_dir / f"{name}.safetensors"
    save_file(state, str(out), metadata=meta)
    return {"file": out.name, **meta, "bytes": out.stat().st_size, "sha256": sha256(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ASSETS), action="append", help="export only this asset (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "assets")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    records = [train_and_export(n, ASSETS[n], args.out_dir) for n in (args.only or sorted(ASSETS))]
    print("| file | backbone | kwargs | classes | best val metric | MB | sha256 |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        metric = f"val_acc {r['val_acc']}" if "val_acc" in r else f"val_rsum {r.get('val_rsum')}"
        print(
            f"| {r['file']} | {r['backbone']} | {r['backbone_kwargs']} | {r['num_classes']} | {metric} "
            f"| {r['bytes'] / 1e6:.2f} | {r['sha256'][:16]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
