"""HST's offline transfer demos: every arm trained side by side, with accuracy / mIoU and memory.

    python scripts/hst_transfer.py                           # both demos, every arm
    python scripts/hst_transfer.py --demo classification --arms linear,hst
    python scripts/hst_transfer.py --demo segmentation --epochs 12

Classification: the tiny ViT pretrained on SyntheticShapes (``assets/shapes_test_vit``) moved to digits by
a linear probe, full fine-tuning, LoRA, UniPT and HST (official semantics, and the detached variant).
Segmentation: the same ViT on SyntheticMultiShapes masks (several shapes per 64 px image, per-pixel
classes), read by a linear head on its last layer (frozen, or fine-tuned in full) or by HST's side
pyramid and FPN-lite decoder.

Each run writes a new ``<out>/run_NNN`` folder (nothing is overwritten) holding one Lightning log folder
per arm, ``<demo>.json`` and ``<demo>.png``, and prints a markdown table. The arm tables below are the
experiment; running an arm is :mod:`visionkit.core.arms`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionkit.errors import exit_on_user_error

PROG = "hst_transfer"
CLASSIFY, SEGMENT = "visionkit.tasks.ClassificationTask", "visionkit.tasks.SegmentationTask"
UNIPT = "visionkit.methods.unipt.UniPTTask"
HST, HST_SEGMENT = "visionkit.methods.hst.HSTTask", "visionkit.methods.hst.HSTSegmentationTask"

#: arm -> (task class path, task arguments besides the backbone); learning rates picked per arm.
CLASSIFICATION_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": (CLASSIFY, {"finetune": "linear", "lr": 1.0e-2}),
    "full": (CLASSIFY, {"finetune": "full", "lr": 1.0e-3}),
    "lora": (CLASSIFY, {"finetune": "lora", "lr": 3.0e-3}),
    "unipt": (UNIPT, {"lr": 3.0e-3}),
    "hst": (HST, {"lr": 3.0e-3}),
    "hst_detached": (HST, {"detached": True, "lr": 3.0e-3}),
}
SEGMENTATION_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear_last": (SEGMENT, {"finetune": "linear", "lr": 1.0e-2}),
    "full_last": (SEGMENT, {"finetune": "full", "lr": 1.0e-3}),
    "hst": (HST_SEGMENT, {"lr": 3.0e-3}),
}
METRICS = {"classification": ["test_acc"], "segmentation": ["test_miou", "test_pixel_acc"]}


def classification_transfer(out_dir: str | Path, arms: Sequence[str] = tuple(CLASSIFICATION_ARMS), epochs: int = 15,
                            seed: int = 0, asset: str = "shapes_test_vit", num_train: int = 500,
                            progress: bool = True) -> list[dict[str, Any]]:
    """The shapes-pretrained tiny ViT moved to digits, one row per arm (:func:`visionkit.core.arms.digits_transfer`:
    32 px, ``num_train`` / 300 / 297 images, memory ratios to full fine-tuning)."""
    from visionkit.core.demos import digits_transfer

    return digits_transfer(CLASSIFICATION_ARMS, arms, out_dir, epochs=epochs, seed=seed, asset=asset, num_train=num_train,
                           highlight="hst", progress=progress)


def segmentation_transfer(out_dir: str | Path, arms: Sequence[str] = tuple(SEGMENTATION_ARMS), epochs: int = 15,
                          seed: int = 0, asset: str = "shapes_test_vit", num_train: int = 1000,
                          progress: bool = True, batch_size: int = 32) -> list[dict[str, Any]]:
    """The shapes-pretrained tiny ViT on SyntheticMultiShapes masks (64 px: the ViT's 8 px patches on an 8x8 grid,
    its position embedding resampled; 4 classes + background, up to 3 shapes per image; ``num_train`` / 300 / 300
    images, batches of ``batch_size``), one row per arm; memory ratios to ``full_last``
    (measured whether or not it is trained). Writes ``segmentation.json``/``.png``.
    """
    from visionkit.core.arms import arm_builders, run_arms
    from visionkit.data.datamodules import SyntheticMultiShapesDataModule
    from visionkit.utils.arm_report import write_arm_report

    def make_data() -> SyntheticMultiShapesDataModule:
        return SyntheticMultiShapesDataModule(num_classes=4, num_train=num_train, num_val=300, num_test=300,
                                              batch_size=batch_size, image_size=64, seed=seed)

    common = {"asset": asset, "num_classes": 4, "image_size": 64, "warmup_epochs": 1.0}
    builders = arm_builders(SEGMENTATION_ARMS, arms, **common)
    reference = arm_builders(SEGMENTATION_ARMS, ["full_last"], **common)["full_last"]
    rows = run_arms(builders, make_data, epochs, seed, out_dir, reference, progress)
    title = (f"{asset} -> SyntheticMultiShapes masks ({num_train} train images, batch {batch_size}, {epochs} epochs, "
             f"seed {seed})")
    write_arm_report(rows, out_dir, "segmentation", "test_miou", "test mIoU", title, highlight="hst")
    return rows


def demos() -> dict:
    """The demos of this script (name -> :class:`visionkit.core.demos.TransferDemo`)."""
    from visionkit.core.demos import TransferDemo

    return {
        "classification": TransferDemo(CLASSIFICATION_ARMS, classification_transfer, METRICS["classification"]),
        "segmentation": TransferDemo(SEGMENTATION_ARMS, segmentation_transfer, METRICS["segmentation"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0, or exit 2 with one ``hst_transfer: error:`` line on bad input (nothing written)."""
    from visionkit.core.demos import demo_parser, run_demos

    table = demos()
    args = demo_parser(PROG, __doc__.split("\n\n")[0], table, "outputs/hst_transfer").parse_args(argv)
    with exit_on_user_error(PROG, extra=(FileExistsError,)):
        run_demos(args, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
