"""UniPT rows of ``scripts/bench_memory.py`` (imported by the script; registers on import)."""

from __future__ import annotations

from typing import Any

from visionkit.memory import register_benchmark


def _builder(readout: str):
    def build(backbone: str, image_size: int, num_classes: int, backbone_kwargs: dict) -> tuple[Any, Any, Any]:
        from visionkit.methods.unipt.task import UniPTTask

        task = UniPTTask(
            backbone=backbone, backbone_kwargs=backbone_kwargs, num_classes=num_classes, image_size=image_size,
            reduction=2, variant="token", readout=readout, scheduler="none",
        )
        task.train()
        optimizer = task.configure_optimizers()

        def loss_fn(batch: dict) -> Any:
            return task.compute_loss(batch, "train")["loss"]

        return task, loss_fn, optimizer

    return build


#: UniPT r=2, token variant, class-token read-out (only the class-token query row is computed).
register_benchmark("unipt")(_builder("cls"))
#: The same with every token's output computed and averaged (the paper's all-token interaction).
register_benchmark("unipt_all_tokens")(_builder("mean"))
