"""Memory and time of rewired stages, reversible against vanilla (the memory table of spec A7 item 4).

:func:`depth_table` builds a model per depth (``build(depth)``, rewired), copies it into a reversible and a
vanilla one with the same weights, and measures for each

* the bytes autograd saves for backward during one forward (:class:`~visionkit.memory.SavedTensorMeter`,
  parameters excluded): inside the rewired stage (``stage``, a module name; every storage saved while a
  module under it runs) and in the whole model;
* the time of one training step (forward, ``sum`` of the output, backward): the median of ``repeats``
  steps, reversible and vanilla alternating so that both see the same machine load.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from torch import Tensor, nn

from visionkit.memory import SavedTensorMeter
from visionkit.methods.re2tal.rewire import rewire, set_mode

__all__ = ["DepthRow", "depth_table", "saved_bytes", "step_seconds"]


@dataclass(frozen=True)
class DepthRow:
    """One depth of :func:`depth_table`: bytes (saved for backward) and seconds (median training step)."""

    depth: int
    reversible_stage_bytes: int
    vanilla_stage_bytes: int
    reversible_total_bytes: int
    vanilla_total_bytes: int
    reversible_seconds: float
    vanilla_seconds: float

    @property
    def time_ratio(self) -> float:
        """Reversible / vanilla step time."""
        return self.reversible_seconds / self.vanilla_seconds

    def as_dict(self) -> dict[str, float]:
        """The fields and ``time_ratio``."""
        return {**asdict(self), "time_ratio": self.time_ratio}


def saved_bytes(model: nn.Module, x: Tensor, stage: str) -> tuple[int, int]:
    """``(bytes saved inside module `stage`, bytes saved in the whole model)`` in one forward of ``x``; the
    backward of ``sum(output)`` runs after it (so the reversible backward is exercised too)."""
    model.zero_grad(set_to_none=True)
    with SavedTensorMeter(model, per_module=model) as meter:
        out = model(x)
    out.float().sum().backward()
    return meter.bytes_under(stage), meter.bytes


def step_seconds(model: nn.Module, x: Tensor) -> float:
    """Wall seconds of one forward + ``sum`` + backward of ``model`` on ``x`` (gradients cleared first)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(x).float().sum().backward()
    return time.perf_counter() - start


def depth_table(build: Callable[[int], nn.Module], x: Tensor, depths: Sequence[int], stage: str,
                repeats: int = 5, warmup: int = 1) -> list[DepthRow]:
    """Saved bytes and step times of the reversible and vanilla rewired ``build(depth)`` for each depth.

    Args:
        build: depth -> the original (not rewired) model in train mode; it is rewired here.
        x: the input batch.
        depths: depths to measure, in order.
        stage: module name of the rewired stage in the model (``"blocks"`` for a ViT, ``"layer1"`` for a ResNet).
        repeats: timed steps per mode (median); warmup: untimed steps per mode first.
    """
    rows = []
    for depth in depths:
        reversible = rewire(build(depth), "reversible")
        vanilla = set_mode(copy.deepcopy(reversible), "vanilla")
        rev_stage, rev_total = saved_bytes(reversible, x, stage)
        van_stage, van_total = saved_bytes(vanilla, x, stage)
        for _ in range(warmup):
            step_seconds(reversible, x)
            step_seconds(vanilla, x)
        times: dict[str, list[float]] = {"reversible": [], "vanilla": []}
        for _ in range(repeats):
            times["reversible"].append(step_seconds(reversible, x))
            times["vanilla"].append(step_seconds(vanilla, x))
        rows.append(DepthRow(depth, rev_stage, van_stage, rev_total, van_total,
                             statistics.median(times["reversible"]), statistics.median(times["vanilla"])))
        del reversible, vanilla
    return rows
