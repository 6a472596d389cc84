"""Lightning tasks of UniPT: classification on a timm ViT, image-text retrieval on open_clip."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.backbones import vit_hidden_states
from visionkit.errors import check_choice
from visionkit.methods.unipt.callbacks import layer_weight_chart
from visionkit.methods.unipt.model import UniPTClassifier, UniPTTower
from visionkit.tasks.classification import ClassifierBase
from visionkit.tasks.retrieval import RetrievalBase, open_clip_image_size
from visionkit.tuners import BaseTuner
from visionkit.utils.viz import overlay

__all__ = ["UniPTRetrievalTask", "UniPTTask"]


class UniPTTask(ClassifierBase):
    """UniPT (Diao et al., CVPR 2024) for image classification on any timm ViT/DeiT.

    The backbone is frozen, kept in eval mode and run under ``torch.no_grad()``; a UniPT side
    network reads its token embedding and every block output and feeds a new linear head. Only
    UniPT and the head train, and autograd keeps nothing from inside the backbone.

    Args:
        reduction: ``r``: the interaction width is ``M = embed_dim // r`` (paper default 2).
        variant: ``"token"`` (VSE∞: the last block's tokens query every earlier state) or
            ``"global"`` (CLIP4Clip: the pre-logits feature is the one query).
        readout: token variant: ``"cls"`` (class-token output; only that query row is computed)
            or ``"mean"`` (mean over all output tokens, every row computed).
        embed_dim: UniPT output width ``E`` (token variant; default: the backbone's width).
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`
            (default backbone ``test_vit``).
    """

    default_backbone: ClassVar[str] = "test_vit"

    def __init__(
        self,
        reduction: int = 2,
        variant: Literal["token", "global"] = "token",
        readout: Literal["cls", "mean"] = "cls",
        embed_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        hp = self.hparams
        return UniPTClassifier(net, hp.num_classes, hp.reduction, hp.variant, hp.readout, hp.embed_dim, image_size=hp.image_size)

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Predictions, where the class-token query reads (the most trusted layer), and ``pi`` per layer."""
        panels = super().visualize(batch, outputs)
        images = batch["image"]
        with torch.no_grad():
            hidden = vit_hidden_states(self.model.base_model, self.normalize(images))
            unipt = self.model.unipt
            weights = self.model.last_layer_weights
            if weights is None or len(weights) != len(images):
                self.model(self.normalize(images))
                weights = self.model.last_layer_weights
            reads = unipt.read_weights(hidden.states, hidden.mask, anchor=hidden.pooled, query_index=hidden.position)
        grid = getattr(getattr(self.model.base_model, "patch_embed", None), "grid_size", None)
        best = int(weights.mean(0).argmax())
        num_prefix = int(getattr(self.model.base_model, "num_prefix_tokens", 0))
        patch = reads[:, best, num_prefix:]
        if grid is not None and patch.shape[1] == grid[0] * grid[1]:
            heat = patch.reshape(-1, 1, *grid)
            heat = heat / heat.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            heat = F.interpolate(heat, size=images.shape[-2:], mode="nearest")[:, 0]
            panels[f"reads_layer{best}"] = overlay(images, heat)
        panels["layer_weights"] = layer_weight_chart(weights, f"UniPT confidence over layers ({len(weights)} images)")
        return panels


class UniPTRetrievalTask(RetrievalBase):
    """UniPT on both towers of a frozen open_clip model, for image-text retrieval.

    Each tower (image, text) gets its own UniPT side network reading the tower's embedding and
    every residual block output; the towers run under ``torch.no_grad()`` and in eval mode, so
    autograd keeps nothing from inside them. Everything else (captions, loss, recall metrics) is
    :class:`~visionkit.tasks.RetrievalBase`'s.

    Args:
        reduction: ``r`` (``M = E / r``).
        variant: ``"token"`` (VSE∞: the last layer's tokens are the queries; the embedding is
            UniPT's output at the class / end-of-text token) or ``"global"`` (CLIP4Clip: embedding =
            frozen embedding + UniPT correction; the pooled embedding is the query).
        towers: ``"both"``, ``"image"`` or ``"text"``: which towers get UniPT (the other stays frozen).
        **kwargs: model, loss and optimisation arguments of :class:`~visionkit.tasks.RetrievalBase`.
    """

    def __init__(
        self,
        reduction: int = 1,
        variant: Literal["token", "global"] = "token",
        towers: Literal["both", "image", "text"] = "both",
        **kwargs: Any,
    ) -> None:
        check_choice("towers", towers, ("both", "image", "text"))
        super().__init__(**kwargs)

    def adapt(self, clip: nn.Module) -> nn.Module:
        """The frozen open_clip model; the UniPT towers are built beside it (``image_unipt``, ``text_unipt``)."""
        hp = self.hparams
        size = open_clip_image_size(clip) or 224
        images = torch.zeros(1, 3, size, size)
        tokens = self.tokenizer(["a photo"])
        self.image_unipt = UniPTTower(clip, "image", images, hp.reduction, hp.variant) if hp.towers != "text" else None
        self.text_unipt = UniPTTower(clip, "text", tokens, hp.reduction, hp.variant) if hp.towers != "image" else None
        return BaseTuner(clip, trainable=())

    def parameter_report(self):
        """Trainable (UniPT) and total (open_clip + UniPT) parameters."""
        from visionkit.core.params import parameter_report

        return parameter_report(self)

    def encode_image(self, images: Tensor) -> Tensor:
        if self.image_unipt is None:
            with torch.no_grad():
                return super().encode_image(images)
        return self.image_unipt(self.clip, self.normalize(images))

    def encode_text(self, tokens: Tensor) -> Tensor:
        if self.text_unipt is None:
            with torch.no_grad():
                return super().encode_text(tokens)
        return self.text_unipt(self.clip, tokens)

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Retrieved captions, and UniPT's confidence over each tower's layers."""
        panels = super().visualize(batch, outputs)
        with torch.no_grad():
            self(batch["image"], batch["caption"])
        for name, tower in (("image", self.image_unipt), ("text", self.text_unipt)):
            if tower is not None and tower.last_layer_weights is not None:
                panels[f"{name}_layer_weights"] = layer_weight_chart(tower.last_layer_weights, f"UniPT {name} tower: confidence over layers")
        return panels
