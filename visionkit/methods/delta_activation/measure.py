"""Plain (spatial) activation density of a network without delta layers: the baseline DAL is compared to."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionkit.methods.delta_activation.insert import ACTIVATIONS


@torch.no_grad()
def spatial_density(model: nn.Module, frames: Tensor, after: tuple[type[nn.Module], ...] = ACTIVATIONS) -> float:
    """Share of nonzero outputs of every activation module of ``model`` on ``frames`` ``(N, C, H, W)``:
    ``sum nnz / sum numel`` over the modules (what the paper reports for its non-delta baseline)."""
    counts = torch.zeros(2, dtype=torch.float64)

    def count(module: nn.Module, args: tuple, output: Tensor) -> None:
        counts[0] += float(torch.count_nonzero(output))
        counts[1] += output.numel()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, after)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no activation modules of {[c.__name__ for c in after]}")
    training = model.training
    try:
        model.eval()
        model(frames)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return float(counts[0] / counts[1])
