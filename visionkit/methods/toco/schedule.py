"""ToCo's learning-rate schedule (spec §2.8; official ``utils/optimizer.PolyWarmupAdamW``), as a factor of the peak lr.

For the optimizer step ``t`` (0-based, counted before the step), warm-up length ``W`` and ``T`` steps in all::

    t <  W:  start + (1 - start) t / W          (official start 1e-6, W = 1500)
    t >= W:  (1 - t / T) ** power               (official power 0.9, T = 20000 VOC / 80000 COCO)

The poly part is not re-based after the warm-up, so the factor drops from about 1 to ``(1 - W/T)^power``
(0.93224 with the official values) at ``t = W``; it is 0 from ``t = T`` on.
"""

from __future__ import annotations

from visionkit.methods.toco.errors import ToCoError

__all__ = ["poly_warmup_factor"]


def poly_warmup_factor(step: int, total: int, warmup: int, power: float = 0.9, start: float = 1e-6) -> float:
    """The lr factor at optimizer step ``step`` of ``total`` with ``warmup`` linear warm-up steps (see above)."""
    if total < 1 or warmup < 0 or power <= 0 or not 0 < start <= 1:
        raise ToCoError(
            f"poly schedule needs total >= 1 steps, warmup >= 0, power > 0 and 0 < start <= 1, got total={total}, "
            f"warmup={warmup}, power={power}, start={start}"
        )
    if step < warmup:
        return start + (1.0 - start) * step / warmup
    return max(1.0 - step / total, 0.0) ** power
