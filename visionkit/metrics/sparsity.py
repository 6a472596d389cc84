"""Activation density: the share of nonzero entries of recorded activations (or of their temporal deltas),
per layer, overall and weighted by each layer's fan-out (the share of multiply-accumulates still needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


class ActivationDensity(Metric):
    """Density ``nnz / numel`` of per-layer activation counts, summed over batches (and DDP ranks).

    Args:
        layers: layer names, in a fixed order.
        fanouts: multiply-accumulates each activation of the layer feeds (the weights of ``mac_density``).

    ``update({name: (nnz, numel)})`` adds counts; ``compute()`` returns ``density`` (``sum nnz / sum numel``
    over all layers, not the mean of per-layer ratios), ``mac_density`` (``sum f * nnz / sum f * numel``)
    and ``density/<name>`` per layer. Layers without counts yet are left out of the per-layer keys.
    """

    full_state_update = False

    def __init__(self, layers: Sequence[str], fanouts: Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        if len(layers) != len(fanouts) or not layers:
            raise ValueError(f"need one fan-out per layer, got {len(layers)} layers and {len(fanouts)} fan-outs")
        self.layers = list(layers)
        self.index = {name: i for i, name in enumerate(self.layers)}
        self.register_buffer("fanouts", torch.tensor(list(fanouts), dtype=torch.float64), persistent=False)
        self.add_state("nnz", torch.zeros(len(layers), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("numel", torch.zeros(len(layers), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, counts: Mapping[str, tuple[Tensor | int, Tensor | int]]) -> None:
        for name, (nnz, numel) in counts.items():
            i = self.index[name]
            self.nnz[i] += torch.as_tensor(nnz, dtype=torch.float64, device=self.nnz.device)
            self.numel[i] += float(numel)

    def compute(self) -> dict[str, Tensor]:
        seen = self.numel > 0
        fan = self.fanouts.to(self.nnz.device)
        out = {
            "density": self.nnz.sum() / self.numel.sum().clamp_min(1),
            "mac_density": (fan * self.nnz).sum() / (fan * self.numel).sum().clamp_min(1),
        }
        for name, i in self.index.items():
            if seen[i]:
                out[f"density/{name}"] = self.nnz[i] / self.numel[i]
        return {k: v.float() for k, v in out.items()}
