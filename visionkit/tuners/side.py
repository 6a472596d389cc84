"""``SideTuner``: a frozen backbone feeding its intermediate activations to a trainable side network."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from visionkit.backbones.intermediates import Intermediates, get_intermediates
from visionkit.tuners.base import BaseTuner

__all__ = ["SideTuner"]

#: ``extractor(backbone, x) -> anything the side network accepts``.
Extractor = Callable[[nn.Module, Tensor], Any]


class SideTuner(BaseTuner):
    """Frozen ``base_model`` + trainable ``side_network`` fed with the backbone's intermediates.

    ``forward(x) = side_network(extract(x))`` where, by default,
    ``extract(x) = get_intermediates(base_model, x, indices, norm, output_fmt, prefix_tokens,
    include_embedding=...)`` (an :class:`~visionkit.backbones.intermediates.Intermediates`).

    With ``backbone_no_grad=True`` (UniPT, LST) the extraction runs under ``torch.no_grad()``:
    autograd records nothing inside the backbone, which is what makes these methods
    memory-cheap. Methods whose gradients must flow through the frozen backbone into added
    inputs (HST's meta tokens) pass ``backbone_no_grad=False`` and their own ``extractor``.
    The backbone always stays in eval mode (BatchNorm statistics, dropout and drop-path are
    frozen); the whole side network follows ``train()``/``eval()``.

    Args:
        base_model: the backbone (frozen in place).
        side_network: the trainable module; called with the extractor's result.
        indices: backbone levels to extract (``get_intermediates`` semantics: ``int n`` = last n).
        norm: apply the backbone's final norm to each level.
        output_fmt: ``"NLC"``, ``"NCHW"`` or ``"auto"``.
        prefix_tokens: also pass the class/register tokens (``Intermediates.prefix``).
        include_embedding: also pass the ViT token embedding (``Intermediates.embedding``).
        backbone_no_grad: run the backbone under ``torch.no_grad()``.
        extractor: replaces the default extraction (``(backbone, x) -> features``).
        trainable: backbone parameter prefixes to keep trainable (not allowed together with
            ``backbone_no_grad=True``, which would silently leave them without gradients).

    Raises:
        ValueError: ``backbone_no_grad=True`` while some backbone parameter is trainable, or a
            side network without trainable parameters.
    """

    def __init__(
        self,
        base_model: nn.Module,
        side_network: nn.Module,
        *,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        output_fmt: Literal["auto", "NLC", "NCHW"] = "auto",
        prefix_tokens: bool = True,
        include_embedding: bool = False,
        backbone_no_grad: bool = True,
        extractor: Extractor | None = None,
        trainable: Iterable[str] = (),
    ) -> None:
        super().__init__(base_model, trainable=trainable)
        if backbone_no_grad:
            live = [n for n, p in self.base_model.named_parameters() if p.requires_grad]
            if live:
                raise ValueError(
                    f"backbone_no_grad=True but backbone parameters {live[:3]}{'...' if len(live) > 3 else ''} "
                    "are trainable: they would never get a gradient; set backbone_no_grad=False"
                )
        if not any(p.requires_grad for p in side_network.parameters()):
            raise ValueError(f"side network {type(side_network).__name__} has no trainable parameters")
        self.side_network = side_network
        self.backbone_no_grad = backbone_no_grad
        self.extractor = extractor
        self.intermediate_kwargs: dict[str, Any] = {
            "indices": indices,
            "norm": norm,
            "output_fmt": output_fmt,
            "prefix_tokens": prefix_tokens,
            "include_embedding": include_embedding,
        }
        self.train()

    def train(self, mode: bool = True) -> SideTuner:
        """Backbone parts without trainable parameters stay in eval; the whole side network follows ``mode``."""
        super().train(mode)
        side = self._modules.get("side_network")
        if side is not None:
            side.train(mode)
        return self

    def extract(self, x: Tensor) -> Intermediates | Any:
        """Backbone features of ``x`` (no autograd graph when ``backbone_no_grad``)."""
        scope = torch.no_grad() if self.backbone_no_grad else contextlib.nullcontext()
        with scope:
            if self.extractor is not None:
                return self.extractor(self.base_model, x)
            return get_intermediates(self.base_model, x, **self.intermediate_kwargs)

    def forward(self, x: Tensor) -> Any:
        """``side_network(extract(x))``."""
        return self.side_network(self.extract(x))

    def side_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the side network."""
        return self.side_network.parameters()
