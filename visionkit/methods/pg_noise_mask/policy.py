"""The mask policy: a CNN trunk, two MLP heads and an EMA prior giving the Beta logits of every grid cell."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionkit.backbones import create_backbone
from visionkit.methods.pg_noise_mask.masks import PGNoiseMaskError


def _head(features: int, cells: int) -> nn.Sequential:
    """``Linear(F, F) - BN1d - ReLU - Linear(F, F) - BN1d - ReLU - Linear(F, G^2)``."""
    return nn.Sequential(
        nn.Linear(features, features),
        nn.BatchNorm1d(features),
        nn.ReLU(),
        nn.Linear(features, features),
        nn.BatchNorm1d(features),
        nn.ReLU(),
        nn.Linear(features, cells),
    )


def _global_batch_mean(u: Tensor) -> Tensor:
    """``u.mean(0, keepdim=True)`` over the batches of every process (under DDP), so the prior is the same EMA on each rank."""
    mean = u.mean(0, keepdim=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(mean)
        mean = mean / torch.distributed.get_world_size()
    return mean


class NoisePolicy(nn.Module):
    """Beta logits ``(B, G^2)`` per cell from the clean (normalised) image ``(B, C, S, S)``.

    ``h = trunk(x)`` ``(B, F)``; ``u_alpha = A(h)``, ``u_beta = B(h)`` ``(B, G^2)`` (two identical
    heads, see :func:`_head`); with the prior buffers ``base_alpha``, ``base_beta`` ``(1, G^2)``::

        l_alpha = mix * base_alpha + (1 - mix) * u_alpha        (the old buffers)
        base_alpha <- momentum * base_alpha + (1 - momentum) * mean_b(u_alpha).detach()   (training only)

    and the same for beta. Concentrations are ``exp(logits)``. Gradients reach the policy only
    through ``(1 - mix) * u``. Differences from the official ``MaskGenerator``: the buffers are
    registered (they follow ``.to()`` and are in ``state_dict``; the official CPU tensors crash
    on CUDA), and each head runs once per forward (the official runs it a second time for the EMA
    update, which updates the BatchNorm running statistics twice). A forward in eval mode leaves
    the buffers unchanged.

    Args:
        grid: ``G``, cells per side.
        trunk: a timm model name (created with ``num_classes=0``: pooled features) or a module
            with ``num_features`` that returns ``(B, F)``.
        in_chans: input channels of a named trunk.
        pretrained: fetch the named trunk's published weights (needs network).
        mix: weight of the prior in the logits (official 0.9).
        momentum: EMA momentum of the prior (official 0.99).
    """

    base_alpha: Tensor
    base_beta: Tensor

    def __init__(
        self,
        grid: int = 64,
        trunk: str | nn.Module = "resnet10t",
        in_chans: int = 3,
        pretrained: bool = False,
        mix: float = 0.9,
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if grid < 1:
            raise PGNoiseMaskError(f"grid must be >= 1, got {grid}")
        if not (0.0 <= mix <= 1.0 and 0.0 <= momentum <= 1.0):
            raise PGNoiseMaskError(f"mix and momentum must lie in [0, 1], got mix={mix}, momentum={momentum}")
        if isinstance(trunk, str):
            trunk = create_backbone(trunk, pretrained=pretrained, num_classes=0, in_chans=in_chans)
        features = getattr(trunk, "num_features", None)
        if not isinstance(features, int) or features < 1:
            raise PGNoiseMaskError(f"the policy trunk {type(trunk).__name__} has no integer num_features")
        self.grid, self.mix, self.momentum = grid, float(mix), float(momentum)
        cells = grid * grid
        self.trunk = trunk
        self.alpha_head = _head(features, cells)
        self.beta_head = _head(features, cells)
        self.register_buffer("base_alpha", torch.rand(1, cells))
        self.register_buffer("base_beta", torch.rand(1, cells))

    def extra_repr(self) -> str:
        return f"grid={self.grid}, mix={self.mix}, momentum={self.momentum}"

    def head_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The raw head outputs ``(u_alpha, u_beta)``, each ``(B, G^2)`` (no mixing, no EMA update)."""
        if self.training and x.shape[0] < 2:
            raise PGNoiseMaskError(
                f"the policy needs a batch of at least 2 in training mode (BatchNorm1d heads), got {x.shape[0]}"
            )
        h = self.trunk(x)
        return self.alpha_head(h), self.beta_head(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_logits, beta_logits)``, each ``(B, G^2)``; in training mode also updates the prior by EMA."""
        u_alpha, u_beta = self.head_outputs(x)
        alpha_logits = self.mix * self.base_alpha + (1.0 - self.mix) * u_alpha
        beta_logits = self.mix * self.base_beta + (1.0 - self.mix) * u_beta
        if self.training:
            with torch.no_grad():
                for buffer, u in ((self.base_alpha, u_alpha), (self.base_beta, u_beta)):
                    new = self.momentum * buffer + (1.0 - self.momentum) * _global_batch_mean(u.detach())
                    buffer.copy_(new)
        return alpha_logits, beta_logits

    def prior(self) -> tuple[Tensor, Tensor]:
        """Copies of the prior logits ``(base_alpha, base_beta)``, each ``(1, G^2)`` (evaluation: no policy call)."""
        return self.base_alpha.clone(), self.base_beta.clone()
