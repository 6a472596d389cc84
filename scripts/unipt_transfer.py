"""UniPT's offline transfer demos: every arm trained side by side, with accuracy and memory.

    python scripts/unipt_transfer.py                          # both demos
    python scripts/unipt_transfer.py --demo classification --epochs 15
    python scripts/unipt_transfer.py --demo retrieval --arms zero_shot,unipt

Classification: the tiny ViT pretrained on SyntheticShapes (``assets/shapes_test_vit``) moved
to digits by a linear probe, full fine-tuning, LoRA and UniPT. Retrieval: the tiny open_clip
model pretrained on colour+shape captions (``assets/clip_shapes_tiny``) moved to captions that
also state the position: frozen zero-shot, projection-only and UniPT (``--arms`` adds ``full``
fine-tuning and ``unipt_global``, the CLIP4Clip variant).

Each run writes a new ``<out>/run_NNN`` folder (nothing is overwritten) holding one Lightning
log folder per arm, ``<demo>.json`` and ``<demo>.png``, and prints a markdown table. The arm
tables below are the experiment; running an arm is :mod:`visionkit.core.arms`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionkit.errors import exit_on_user_error

PROG = "unipt_transfer"
CLASSIFY, RETRIEVE = "visionkit.tasks.ClassificationTask", "visionkit.tasks.RetrievalTask"
UNIPT, UNIPT_RETRIEVAL = "visionkit.methods.unipt.UniPTTask", "visionkit.methods.unipt.UniPTRetrievalTask"

#: arm -> (task class path, task arguments besides the backbone / model); learning rates picked per arm.
CLASSIFICATION_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": (CLASSIFY, {"finetune": "linear", "lr": 1.0e-2}),
    "full": (CLASSIFY, {"finetune": "full", "lr": 1.0e-3}),
    "lora": (CLASSIFY, {"finetune": "lora", "lr": 3.0e-3}),
    "unipt": (UNIPT, {"lr": 3.0e-3}),
}
RETRIEVAL_ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "zero_shot": (RETRIEVE, {"tune": "frozen"}),
    "projection": (RETRIEVE, {"tune": "projection", "lr": 3.0e-3}),
    "unipt": (UNIPT_RETRIEVAL, {"variant": "token", "reduction": 1, "lr": 3.0e-3}),
    "unipt_global": (UNIPT_RETRIEVAL, {"variant": "global", "reduction": 1, "lr": 3.0e-3}),
    "full": (RETRIEVE, {"tune": "full", "lr": 1.0e-3}),
}
#: retrieval arms run by default (full fine-tuning's memory is always measured: the ratios' reference).
DEFAULT_RETRIEVAL_ARMS = ("zero_shot", "projection", "unipt")
#: the shift: pretraining captions name colour and shape; the target's also name the position.
TARGET_DESCRIBE = ("colour", "shape", "position")
METRICS = {"classification": ["test_acc"], "retrieval": ["test_i2t_r1", "test_t2i_r1", "test_rsum"]}


def classification_transfer(out_dir: str | Path, arms: Sequence[str] = tuple(CLASSIFICATION_ARMS), epochs: int = 15, seed: int = 0,
                            asset: str = "shapes_test_vit", num_train: int = 500, progress: bool = True) -> list[dict[str, Any]]:
    """The shapes-pretrained tiny ViT moved to digits, one row per arm (:func:`visionkit.core.arms.digits_transfer`:
    32 px, ``num_train`` / 300 / 297 images, memory ratios to full fine-tuning)."""
    from visionkit.core.demos import digits_transfer

    return digits_transfer(CLASSIFICATION_ARMS, arms, out_dir, epochs=epochs, seed=seed, asset=asset, num_train=num_train,
                           highlight="unipt", progress=progress)


def retrieval_transfer(out_dir: str | Path, arms: Sequence[str] = DEFAULT_RETRIEVAL_ARMS, epochs: int = 30, seed: int = 0,
                       asset: str = "clip_shapes_tiny", num_train: int = 4000, progress: bool = True) -> list[dict[str, Any]]:
    """The caption-pretrained tiny open_clip model moved to captions that also state the position, one row per arm.

    32 px, ``num_train`` / 500 / 500 pairs, batches of 64 (R@1 over 500 candidates). Memory ratios are to full
    fine-tuning, measured for one step whether or not the ``full`` arm is trained. Writes ``retrieval.json``/``.png``.
    """
    from visionkit.core.arms import arm_builders, run_arms
    from visionkit.data.datamodules import SyntheticCaptionsDataModule
    from visionkit.utils.arm_report import write_arm_report

    def make_data() -> SyntheticCaptionsDataModule:
        return SyntheticCaptionsDataModule(describe=list(TARGET_DESCRIBE), num_train=num_train, num_val=500,
                                           num_test=500, batch_size=64, image_size=32, seed=seed)

    builders = arm_builders(RETRIEVAL_ARMS, arms, asset=asset, image_size=32, warmup_epochs=1.0)
    reference = arm_builders(RETRIEVAL_ARMS, ["full"], asset=asset, image_size=32)["full"]
    rows = run_arms(builders, make_data, epochs, seed, out_dir, reference, progress)
    title = f"{asset} -> captions with positions ({num_train} pairs, {epochs} epochs, seed {seed})"
    write_arm_report(rows, out_dir, "retrieval", "test_rsum", "test rsum (R@1+5+10, both ways)", title, highlight="unipt")
    return rows


def demos() -> dict:
    """The demos of this script (name -> :class:`visionkit.core.demos.TransferDemo`)."""
    from visionkit.core.demos import TransferDemo

    return {
        "classification": TransferDemo(CLASSIFICATION_ARMS, classification_transfer, METRICS["classification"]),
        "retrieval": TransferDemo(RETRIEVAL_ARMS, retrieval_transfer, METRICS["retrieval"], DEFAULT_RETRIEVAL_ARMS),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0, or exit 2 with one ``unipt_transfer: error:`` line on bad input (nothing written)."""
    from visionkit.core.demos import demo_parser, run_demos

    table = demos()
    args = demo_parser(PROG, __doc__.split("\n\n")[0], table, "outputs/unipt_transfer").parse_args(argv)
    with exit_on_user_error(PROG, extra=(FileExistsError,)):
        run_demos(args, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
